"""Does a gpt-scratch model run, with the same greedy tokens, in tools that were not written for it?

Each tool gets its own venv (its own pins: vLLM pins transformers < 5.20); the shell scripts set them up and run:
    python bench/consumers.py prepare WORK [MODEL_DIR]   # (project venv) ours + to-gpt2 export + expected tokens
    python bench/consumers.py ctranslate2 WORK           # bench/gpt2_consumers.sh, after ct2-transformers-converter
    python bench/consumers.py onnxruntime WORK           # bench/gpt2_consumers.sh, after optimum-cli export onnx
    python bench/consumers.py vllm WORK                  # bench/vllm.sh: the native directory, trust_remote_code
    python bench/consumers.py llama_cpp WORK             # bench/llama_cpp.sh, after convert_hf_to_gguf.py

``prepare`` uses MODEL_DIR (a trained model, e.g. runs/quickstart/model), or a tiny random one with the recipes'
padded vocabulary (``modern`` in place of MODEL_DIR: of the modern architecture), and records our greedy tokens and
their log-probabilities (from the raw logits); every consumer is compared with them. A model GPT-2 cannot represent
(the modern architecture) gets no GPT-2 export: only the native directory's consumers (vLLM) apply.
"""

import json
import sys
from pathlib import Path

PROMPTS = ["The meaning of life is", "def fibonacci(n):", "import os\nimport sys\n", "The history of the"]
NEW_TOKENS = 16


def prepare(work: Path, model_dir: str | None = None) -> None:
    import torch
    from transformers import GPT2LMHeadModel

    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, gpt2_tokenizer, save_model_dir
    from gpt_scratch.convert import to_gpt2, without_vocabulary_padding
    from gpt_scratch.tokenizer.text_tokenizer import saved_tokenizer

    if model_dir and model_dir != "modern":
        model = GPTScratchForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    else:
        torch.manual_seed(0)
        # head_dim 64: vLLM's CPU attention supports only common head sizes.
        modern = {"position_embedding_type": "rope", "norm_type": "rmsnorm", "qk_norm": True,
                  "activation_function": "relu2", "final_logit_softcapping": 15.0, "tie_word_embeddings": False,
                  "bias": False}  # fmt: skip
        config = GPTScratchConfig(n_layer=2, n_head=2, n_embd=128, n_positions=128, padded_vocab_size=50304,
                                  **(modern if model_dir == "modern" else {}))  # fmt: skip
        model = GPTScratchForCausalLM(config).eval()
        with torch.no_grad():  # a random init is nearly flat; sharpen it so greedy choices are clear-cut
            model.get_output_embeddings().weight.mul_(8)
    if not model.config.tie_word_embeddings:  # vLLM sizes its own head by vocab_size
        model = without_vocabulary_padding(model)
    # The directory's own tokenizer (a trained one), else GPT-2's.
    tokenizer = saved_tokenizer(model_dir, model.config.n_positions) if model_dir not in (None, "modern") else (
        gpt2_tokenizer(model.config.n_positions))  # fmt: skip
    save_model_dir(model, work / "ours", tokenizer)
    exportable = not model.config.gpt2_incompatibilities()
    gpt2 = GPT2LMHeadModel.from_pretrained(to_gpt2(work / "ours", work / "gpt2")).eval() if exportable else None
    expected = {"prompts": [], "tokens": [], "logprobs": []}
    for text in PROMPTS:
        prompt = tokenizer(text, return_tensors="pt").input_ids
        settings = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False,
                    "pad_token_id": tokenizer.eos_token_id}  # fmt: skip
        out = model.generate(prompt, **settings, output_logits=True, return_dict_in_generate=True)
        tokens = out.sequences[0, prompt.shape[1] :].tolist()
        if gpt2 is not None:
            exported = gpt2.generate(prompt, **settings)[0, prompt.shape[1] :].tolist()
            assert exported == tokens, f"the GPT-2 export generates {exported}, ours {tokens}"
        # The raw logits: generate's scores carry min_new_tokens' end-of-text mask, which shifts every log-prob.
        logprobs = [torch.log_softmax(logit[0].float(), -1)[token].item() for logit, token in zip(out.logits, tokens)]
        expected["prompts"].append(prompt[0].tolist())
        expected["tokens"].append(tokens)
        expected["logprobs"].append(logprobs)
    (work / "expected.json").write_text(json.dumps(expected))
    export = f" and its GPT-2 export {work / 'gpt2'}" if gpt2 is not None else " (no GPT-2 export: modern architecture)"
    print(f"saved {work / 'ours'}{export}; expected greedy tokens written")


def check(work: Path, name: str, produced: list[list[int]], logprobs: list[list[float]] | None = None) -> None:
    expected = json.loads((work / "expected.json").read_text())
    same = produced == expected["tokens"]
    line = f"{name}: {'SAME' if same else 'DIFFERENT'} greedy tokens as ours ({len(produced)} prompts x {NEW_TOKENS})"
    if logprobs is not None:
        diff = max(abs(a - b) for got, want in zip(logprobs, expected["logprobs"]) for a, b in zip(got, want))
        line += f"; max |log-prob difference| {diff:.2e}"
    print(line)
    if not same:
        print(f"  expected {expected['tokens']}\n  produced {produced}")
        sys.exit(1)


def prompts(work: Path) -> list[list[int]]:
    return json.loads((work / "expected.json").read_text())["prompts"]


def ctranslate2_run(work: Path) -> None:
    import ctranslate2

    generator = ctranslate2.Generator(str(work / "ct2"), device="cpu")
    vocab = json.loads((work / "gpt2" / "vocab.json").read_text())
    inverse = {i: tok for tok, i in vocab.items()}
    tokens = [[inverse[t] for t in p] for p in prompts(work)]
    results = generator.generate_batch(tokens, max_length=NEW_TOKENS, min_length=NEW_TOKENS, sampling_topk=1,
                                       include_prompt_in_result=False)  # fmt: skip
    check(work, f"CTranslate2 {ctranslate2.__version__}", [r.sequences_ids[0] for r in results])


def onnxruntime_run(work: Path) -> None:
    import onnxruntime
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(work / "onnx")
    produced = []
    for prompt in prompts(work):
        out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, pad_token_id=50256)  # fmt: skip
        produced.append(out[0, len(prompt) :].tolist())
    check(work, f"ONNX Runtime {onnxruntime.__version__} (optimum export)", produced)


def vllm_run(work: Path) -> None:
    """The native directory (not the export) in vLLM's Transformers backend: our modeling file, vLLM's attention."""
    import transformers
    import vllm
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(work / "ours"), trust_remote_code=True, model_impl="transformers", dtype="float32",
              max_model_len=128, gpu_memory_utilization=0.2, enforce_eager=True)  # fmt: skip
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, logprobs=1, ignore_eos=True)
    outputs = llm.generate(PROMPTS, params)  # text: vLLM tokenizes with the directory's tokenizer
    same_ids = [list(o.prompt_token_ids) for o in outputs] == prompts(work)
    print(f"vLLM tokenizer: {'SAME' if same_ids else 'DIFFERENT'} prompt tokens as the model directory's tokenizer")
    produced = [list(o.outputs[0].token_ids) for o in outputs]
    logprobs = [[step[t].logprob for t, step in zip(o.outputs[0].token_ids, o.outputs[0].logprobs)] for o in outputs]
    check(work, f"vLLM {vllm.__version__} (transformers {transformers.__version__})", produced, logprobs)


def llama_cpp_run(work: Path) -> None:
    """The GGUF that llama.cpp's converter made from the GPT-2 export: same tokenizer, same greedy tokens."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(str(work / "model.gguf"), n_ctx=128, logits_all=True, verbose=False)
    expected = json.loads((work / "expected.json").read_text())
    tokenized = [llm.tokenize(text.encode(), add_bos=False, special=False) for text in PROMPTS]
    same_ids = tokenized == expected["prompts"]
    print(f"llama.cpp tokenizer: {'SAME' if same_ids else 'DIFFERENT'} prompt tokens as tiktoken's GPT-2 encoding")
    produced, logprobs = [], []
    for prompt in expected["prompts"]:
        llm.reset()
        llm.eval(prompt)
        tokens, scores = [], []
        for _ in range(NEW_TOKENS):  # greedy by hand: the next-token logits llama.cpp computed, argmax, feed back
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            token = int(logits.argmax())
            tokens.append(token)
            scores.append(float(logits[token] - logits.max() - np.log(np.exp(logits - logits.max()).sum())))
            llm.eval([token])
        produced.append(tokens)
        logprobs.append(scores)
    check(work, f"llama.cpp (llama-cpp-python {llama_cpp.__version__})", produced, logprobs)
    if not same_ids:
        sys.exit(1)


if __name__ == "__main__":
    step, work = sys.argv[1], Path(sys.argv[2])
    steps = {"ctranslate2": ctranslate2_run, "onnxruntime": onnxruntime_run, "vllm": vllm_run,
             "llama_cpp": llama_cpp_run}  # fmt: skip
    prepare(work, *sys.argv[3:]) if step == "prepare" else steps[step](work)
