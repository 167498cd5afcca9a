"""Does an exported gpt-scratch model work in GPT-2 tools that were not written for it? Same greedy tokens?

Run by bench/gpt2_consumers.sh, which gives each tool its own venv:
    python bench/gpt2_consumers.py prepare WORK        # (project venv) tiny model -> to-gpt2 export + expected tokens
    python bench/gpt2_consumers.py ctranslate2 WORK    # (ctranslate2 venv) after ct2-transformers-converter
    python bench/gpt2_consumers.py onnxruntime WORK    # (optimum-onnx venv) after optimum-cli export onnx
"""

import json
import sys
from pathlib import Path

PROMPTS = [
    [464, 3290, 286, 1204, 318],
    [4299, 12900, 261, 44456, 7, 77, 2599],
]  # "The meaning of life is", "def fibonacci(n):"
NEW_TOKENS = 12


def prepare(work: Path) -> None:
    import torch

    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
    from gpt_scratch.convert import to_gpt2

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(GPTScratchConfig(n_layer=2, n_head=4, n_embd=64, n_positions=128)).eval()
    with torch.no_grad():  # a random init is nearly flat; sharpen it so greedy choices are clear-cut
        model.transformer.wte.weight.mul_(8)
    model.save_pretrained(work / "ours")
    exported = to_gpt2(work / "ours", work / "gpt2")
    expected = []
    from transformers import GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel.from_pretrained(exported).eval()
    for prompt in PROMPTS:
        out = gpt2.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                            do_sample=False, pad_token_id=50256)  # fmt: skip
        expected.append(out[0, len(prompt) :].tolist())
    (work / "expected.json").write_text(json.dumps(expected))
    print(f"exported {exported}; expected tokens written")


def check(work: Path, name: str, produced: list[list[int]]) -> None:
    expected = json.loads((work / "expected.json").read_text())
    same = produced == expected
    print(f"{name}: {'SAME' if same else 'DIFFERENT'} greedy tokens as transformers' GPT2LMHeadModel")
    if not same:
        print(f"  expected {expected}\n  produced {produced}")
        sys.exit(1)


def ctranslate2_run(work: Path) -> None:
    import ctranslate2

    generator = ctranslate2.Generator(str(work / "ct2"), device="cpu")
    tokens = [[f"{t}" for t in p] for p in PROMPTS]
    vocab = json.loads((work / "gpt2" / "vocab.json").read_text())
    inverse = {i: tok for tok, i in vocab.items()}
    tokens = [[inverse[t] for t in p] for p in PROMPTS]
    results = generator.generate_batch(tokens, max_length=NEW_TOKENS, min_length=NEW_TOKENS, sampling_topk=1,
                                       include_prompt_in_result=False)  # fmt: skip
    check(work, f"CTranslate2 {ctranslate2.__version__}", [r.sequences_ids[0] for r in results])


def onnxruntime_run(work: Path) -> None:
    import onnxruntime
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(work / "onnx")
    produced = []
    for prompt in PROMPTS:
        out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, pad_token_id=50256)  # fmt: skip
        produced.append(out[0, len(prompt) :].tolist())
    check(work, f"ONNX Runtime {onnxruntime.__version__} (optimum export)", produced)


if __name__ == "__main__":
    step, work = sys.argv[1], Path(sys.argv[2])
    {"prepare": prepare, "ctranslate2": ctranslate2_run, "onnxruntime": onnxruntime_run}[step](work)
