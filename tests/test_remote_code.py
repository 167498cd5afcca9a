"""A saved directory is self-contained: it loads with trust_remote_code where gpt_scratch cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, save_model_dir
from gpt_scratch.chat_template import fit_model_to_tokenizer, with_chat_template
from gpt_scratch.tokenizer import gpt2_encoding, gpt2_tokenizer

from conftest import make_modern

PROMPTS = ["The meaning of life is", "def fibonacci(n):"]
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"},
                {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3 + 3?"},
                {"role": "assistant", "content": "6, of course."}]  # fmt: skip

# Runs in a fresh interpreter. A meta-path finder makes `import gpt_scratch` fail, so everything must come from the
# code files saved in the directory.
BLOCK_GPT_SCRATCH = textwrap.dedent(
    """
    import json, sys

    class BlockGptScratch:
        def find_spec(self, name, path=None, target=None):
            if name == "gpt_scratch" or name.startswith("gpt_scratch."):
                raise ImportError("gpt_scratch is blocked in this process")

    sys.meta_path.insert(0, BlockGptScratch())
    """
)
CHILD = BLOCK_GPT_SCRATCH + textwrap.dedent(
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline

    model_dirs, prompts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    CONVERSATION = json.loads(sys.argv[3])
    try:
        import gpt_scratch  # noqa: F401
        raise SystemExit("gpt_scratch should not be importable here")
    except ImportError:
        pass
    for model_dir in model_dirs:  # one line of JSON each
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
        base = AutoModel.from_pretrained(model_dir, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        tokens = model.generate(**batch, max_new_tokens=10, do_sample=False)
        generator = pipeline("text-generation", model=model_dir, trust_remote_code=True)
        texts = [out[0]["generated_text"] for out in generator(prompts, max_new_tokens=10, do_sample=False)]
        with torch.no_grad():
            hidden = base(batch["input_ids"][:1, -3:]).last_hidden_state
            # Rotary models run past n_positions (scaled by rope_parameters where set): the last positions' states.
            rotary = config.position_embedding_type == "rope"
            long = base(torch.arange(config.n_positions + 8)[None] % 1000).last_hidden_state[:, -3:] if rotary else None
        chat = None
        if tokenizer.chat_template:  # a chat model: its template renders here as where it was trained
            rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True,
                                                     return_assistant_tokens_mask=True)
            chat = {"ids": list(rendered["input_ids"]), "mask": list(rendered["assistant_masks"]),
                    "text": tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True),
                    "eos": model.generation_config.eos_token_id}
        import transformers
        print(json.dumps({
            "chat": chat,
            "transformers": transformers.__version__,
            "config_class": type(config).__name__,
            "base_class": type(base).__name__,
            "model_class": type(model).__name__,
            "module": type(model).__module__,
            "tied": model.lm_head.weight is model.transformer.wte.weight,
            "tokens": tokens.tolist(),
            "pipeline_texts": texts,
            "hidden": hidden.tolist(),
            "long_hidden": None if long is None else long.tolist(),
        }))
    """
)


# Older transformers installed beside the project by .ci/run (see docs/testing.md): the saved code must run there too.
OLDER_TRANSFORMERS = ["4.57.6", "5.19.0"]  # the last 4.x, and the newest vLLM accepts
COMPAT_DIR = Path(__file__).resolve().parent.parent / ".compat"


def transformers_path(version: str | None) -> str:
    """PYTHONPATH that puts transformers ``version`` (None: the installed one) first, or a skip saying how."""
    if version is None:
        return ""
    target = COMPAT_DIR / f"transformers-{version}"
    if not (target / "transformers").is_dir():
        pytest.skip(f"transformers {version} not installed; run: pip install --target {target} transformers=={version}")
    return str(target)


@pytest.mark.parametrize("version", [None, *OLDER_TRANSFORMERS], ids=["installed", *OLDER_TRANSFORMERS])
def test_saved_directories_of_both_architectures_load_in_a_process_without_gpt_scratch(
    tmp_path, our_model, modern_model, version
):
    yarn = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64}  # transformers' own functions
    torch.manual_seed(6)
    chat_model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=50257, padded_vocab_size=50304))
    chat_tokenizer = with_chat_template(gpt2_tokenizer())
    fit_model_to_tokenizer(chat_model, chat_tokenizer, print)
    chat_model.eval()
    models = {"gpt2-architecture": our_model, "modern-architecture": modern_model,
              "rotary-scaled": make_modern(seed=5, rope_parameters=yarn), "chat": chat_model}  # fmt: skip
    model_dirs = [save_model_dir(model, tmp_path / name, chat_tokenizer if name == "chat" else None)
                  for name, model in models.items()]  # fmt: skip
    for model_dir in model_dirs:
        saved = {p.name for p in model_dir.iterdir()}
        assert {
            "configuration_gpt_scratch.py",
            "modeling_gpt_scratch.py",
            "model.safetensors",
            "tokenizer.json",
        } <= saved
        generation_config = json.loads((model_dir / "generation_config.json").read_text())
        stops = [50260, 50256] if model_dir.name == "chat" else 50256  # a chat model stops at <|end|> too
        assert generation_config["eos_token_id"] == stops and generation_config["pad_token_id"] == 50256

    # One fresh process loads both directories, one after the other (its start-up is most of the cost).
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": transformers_path(version)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            json.dumps([str(d) for d in model_dirs]),
            json.dumps(PROMPTS),
            json.dumps(CONVERSATION),
        ],
        cwd=tmp_path,  # not the repository root, so gpt_scratch is not on sys.path by accident
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    children = [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith("{")]
    assert len(children) == len(models), result.stdout[-3000:]

    import transformers

    tokenizer = gpt2_tokenizer()
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    for child, our_model in zip(children, models.values()):
        assert child["transformers"] == (version or transformers.__version__)
        assert child["config_class"] == "GPTScratchConfig"
        assert child["base_class"] == "GPTScratchModel"
        assert child["model_class"] == "GPTScratchForCausalLM"
        assert child["module"].startswith("transformers_modules"), child["module"]
        assert child["tied"] == our_model.config.tie_word_embeddings
        expected = our_model.generate(**batch, max_new_tokens=10, do_sample=False)
        assert child["tokens"] == expected.tolist()
        for row, prompt in enumerate(PROMPTS):
            alone = our_model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=10, do_sample=False)
            assert child["pipeline_texts"][row] == tokenizer.decode(alone[0])
        with torch.no_grad():
            hidden = our_model.transformer(batch["input_ids"][:1, -3:]).last_hidden_state
        torch.testing.assert_close(torch.tensor(child["hidden"]), hidden)
        if child["chat"] is not None:  # the template renders as here: ids, the assistant mask, the prompt's text
            rendered = chat_tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True,
                                                          return_assistant_tokens_mask=True)  # fmt: skip
            assert child["chat"]["ids"] == rendered["input_ids"]
            answers = sum(
                len(gpt2_encoding().encode(m["content"])) + 1 for m in CONVERSATION if m["role"] == "assistant"
            )
            assert child["chat"]["mask"] == rendered["assistant_masks"] and sum(rendered["assistant_masks"]) == answers
            assert child["chat"]["text"] == ("<|endoftext|><|system|>Be brief.<|end|><|user|>What is 2 + 2?<|end|>"
                                             "<|assistant|>")  # fmt: skip
            assert child["chat"]["eos"] == [50260, 50256]
        if our_model.config.position_embedding_type == "rope":
            with torch.no_grad():
                long_ids = torch.arange(our_model.config.n_positions + 8)[None] % 1000
                long = our_model.transformer(long_ids).last_hidden_state[:, -3:]
            torch.testing.assert_close(torch.tensor(child["long_hidden"]), long)
