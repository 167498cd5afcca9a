"""GPT-2 weights in and out, nanoGPT checkpoints in: same logits, same tokens, nothing lost either way."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_runs import run_command
from transformers import AutoTokenizer, GPT2LMHeadModel

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.convert import from_gpt2, from_nanogpt, to_gpt2
from gpt_scratch.tokenizer import gpt2_encoding

from conftest import make_gpt2

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [
    {"n_layer": 3, "n_head": 2, "n_embd": 64, "n_positions": 64},  # n_layer != n_head
    {"n_layer": 1, "n_head": 8, "n_embd": 32, "n_positions": 32, "n_inner": 48, "activation_function": "gelu"},
    {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 128, "layer_norm_epsilon": 1e-6, "vocab_size": 1000},
]


@pytest.mark.parametrize("shape", SHAPES)
def test_import_from_a_gpt2_directory_gives_the_same_logits_and_tokens(tmp_path, shape):
    gpt2 = make_gpt2(seed=40, **shape)
    gpt2.save_pretrained(tmp_path / "gpt2")
    out = from_gpt2(str(tmp_path / "gpt2"), tmp_path / "ours")
    ours = GPTScratchForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, gpt2.config.vocab_size - 1, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, gpt2(ids).logits)
    expected = gpt2.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(ids, max_new_tokens=8, do_sample=False), expected)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "generation_config.json",
            "modeling_gpt_scratch.py"} <= {p.name for p in out.iterdir()}  # fmt: skip


def test_export_loads_in_gpt2_and_round_trips_bit_identically(tmp_path):
    torch.manual_seed(1)
    ours = GPTScratchForCausalLM(GPTScratchConfig(n_layer=3, n_head=4, n_embd=64, n_positions=64)).eval()
    ours.save_pretrained(tmp_path / "ours")
    exported = to_gpt2(tmp_path / "ours", tmp_path / "gpt2")
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "gpt2" and "auto_map" not in config
    assert config["n_ctx"] == config["n_positions"] == 64  # llama.cpp's converter reads n_ctx
    assert (exported / "vocab.json").is_file() and (exported / "merges.txt").read_text().startswith("#version")
    gpt2 = GPT2LMHeadModel.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    text = "GPT-2 tools read this: naïve café 🤖\n\n  def f(x): return x"
    assert tokenizer(text)["input_ids"] == gpt2_encoding().encode_ordinary(text)
    ids = torch.randint(0, 50256, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(gpt2(ids).logits, ours(ids).logits)
    back = GPTScratchForCausalLM.from_pretrained(from_gpt2(str(exported), tmp_path / "back"))
    original = ours.state_dict()
    assert back.state_dict().keys() == original.keys()
    assert all(torch.equal(back.state_dict()[k], original[k]) for k in original)


def test_exporting_what_gpt2_cannot_represent_is_refused():
    with pytest.raises(ValueError, match="GPT-2 cannot represent this model: it has bias=False, options GPT-2 lacks"):
        GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", bias=False)).to_gpt2()


def nanogpt_checkpoint(model: GPTScratchForCausalLM, path: Path, flavour: str) -> Path:
    """A checkpoint as nanoGPT's train.py (model_args dict) or build-nanogpt (a pickled GPTConfig) writes it, with
    the key prefixes torch.compile (`_orig_mod.`) and DDP (`module.`) leave."""
    state = {f"_orig_mod.module.{k}": v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["_orig_mod.module.lm_head.weight"] = model.lm_head.weight
    c = model.config
    args = {"n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd, "block_size": c.n_positions,
            "vocab_size": c.vocab_size, "bias": True, "dropout": 0.0}  # fmt: skip
    if flavour == "nanogpt":
        torch.save({"model": state, "model_args": args, "iter_num": 10, "best_val_loss": 1.0}, path)
        return path
    script = (  # build-nanogpt pickles its GPTConfig dataclass from __main__ (train_gpt2.py)
        "import dataclasses, sys, torch\n"
        "@dataclasses.dataclass\n"
        "class GPTConfig:\n"
        "    block_size: int; vocab_size: int; n_layer: int; n_head: int; n_embd: int\n"
        "state = torch.load(sys.argv[1])\n"
        "args = state.pop('args')\n"
        "cfg = GPTConfig(**{k: args[k] for k in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd')})\n"
        "torch.save({'model': state['model'], 'config': cfg, 'step': 5, 'val_loss': 3.0}, sys.argv[1])\n"
    )
    torch.save({"model": state, "args": args}, path)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    return path


@pytest.mark.parametrize("flavour", ["nanogpt", "build-nanogpt"])
def test_nanogpt_checkpoints_import_to_identical_logits(tmp_path, flavour):
    torch.manual_seed(2)
    source = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny", vocab_size=50304, n_layer=3)).eval()
    path = nanogpt_checkpoint(source, tmp_path / "ckpt.pt", flavour)
    imported = from_nanogpt(path, activation="gelu_new")
    ids = torch.randint(0, 50257, (2, 10))
    # nanoGPT's 50,304 rows are GPT-2's 50,257 tokens and padding: the padded ids are never scored or generated.
    assert (imported.config.vocab_size, imported.config.padded_vocab_size) == (50257, 50304)
    with torch.no_grad():
        assert torch.equal(imported(ids).logits, source(ids).logits[..., :50257])
    assert imported.lm_head.weight is imported.transformer.wte.weight


def test_nanogpt_flavour_sets_the_activation_each_project_uses(tmp_path):
    source = GPTScratchForCausalLM(GPTScratchConfig.from_preset("tiny"))
    nano = from_nanogpt(nanogpt_checkpoint(source, tmp_path / "a.pt", "nanogpt"))
    build = from_nanogpt(nanogpt_checkpoint(source, tmp_path / "b.pt", "build-nanogpt"))
    assert (nano.config.activation_function, build.config.activation_function) == ("gelu", "gelu_new")


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    torch.save({"weights": {"x": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not a nanoGPT checkpoint: no 'model' state dict \(found \['weights'\]\)"):
        from_nanogpt(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint file"):
        from_nanogpt(tmp_path / "text.pt")
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="no 'model_args' or 'config'"):
        from_nanogpt(tmp_path / "bare.pt")


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    torch.save({"model": {}, "model_args": {}, "hook": subprocess.Popen}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not plain data .*Popen"):
        from_nanogpt(tmp_path / "evil.pt")


def test_cli_from_gpt2(tmp_path):
    make_gpt2(seed=41).save_pretrained(tmp_path / "gpt2")
    run_command("-m gpt_scratch.convert", "from-gpt2", str(tmp_path / "gpt2"), str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "gpt_scratch"


def test_cli_to_gpt2_of_a_modern_model_is_one_line_naming_the_options_gpt2_lacks(tmp_path):
    from gpt_scratch import save_model_dir

    from conftest import make_modern

    model_dir = save_model_dir(make_modern(seed=42), tmp_path / "modern")
    result = run_command("-m gpt_scratch.convert", "to-gpt2", str(model_dir), str(tmp_path / "out"), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "position_embedding_type='rope'" in result.stderr and "norm_type='rmsnorm'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unpad_keeps_the_logits_and_leaves_vocab_size_rows(tmp_path):
    from gpt_scratch import save_model_dir

    from conftest import make_modern

    padded = make_modern(seed=43, padded_vocab_size=50304)
    model_dir = save_model_dir(padded, tmp_path / "padded")
    run_command("-m gpt_scratch.convert", "unpad", str(model_dir), str(tmp_path / "unpadded"))
    unpadded = GPTScratchForCausalLM.from_pretrained(tmp_path / "unpadded").eval()
    assert unpadded.lm_head.weight.shape[0] == unpadded.transformer.wte.weight.shape[0] == 50257
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(unpadded(ids).logits, padded(ids).logits)
