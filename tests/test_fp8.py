"""FP8 training through torchao (gpt_scratch.training.fp8), run on CPU with torchao's emulation of the float8 casts:
within bf16's tolerance of the bf16 path, one graph under compile, ordinary weights in checkpoints and exports; refused
with one line where the hardware has no FP8."""

import copy
import sys
from pathlib import Path

import pytest
import torch
from train_runs import run_train
from transformers import AutoModelForCausalLM

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.saving import save_model_dir
from gpt_scratch.training.fp8 import convert_to_fp8, fp8_layer_names, fp8_unavailable

from conftest import MODERN

# torchao beside the venv (docs/testing.md: installed in it, transformers would import it in every process).
TORCHAO = Path(__file__).resolve().parent.parent / ".compat" / "torchao"
if TORCHAO.is_dir() and str(TORCHAO) not in sys.path:
    sys.path.append(str(TORCHAO))
pytest.importorskip("torchao.float8", reason="torchao is not installed (docs/testing.md)")
VOCAB = 512  # small: the head is not what FP8 converts


def small_modern_model() -> GPTScratchForCausalLM:
    torch.manual_seed(0)
    config = GPTScratchConfig.from_preset(
        "tiny", n_embd=128, vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=0, embd_pdrop=0.0,
        resid_pdrop=0.0, attn_pdrop=0.0, **MODERN
    )  # fmt: skip
    return GPTScratchForCausalLM(config).train()


def windows(seed: int, rows: int = 4, seq_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.randint(0, VOCAB, (rows, seq_len + 1), generator=torch.Generator().manual_seed(seed))
    return window[:, :-1], window[:, 1:]


def bf16_loss_and_gradients(model, inputs, targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=inputs, shift_labels=targets).loss
    loss.backward()
    return loss.detach(), {name: param.grad.clone() for name, param in model.named_parameters()}


def test_fp8_converts_the_blocks_linear_layers_and_keeps_the_weights():
    model = small_modern_model()
    before = {name: param for name, param in model.named_parameters()}
    converted = convert_to_fp8(model, emulate=True)
    assert converted == sorted(fp8_layer_names(model)) and len(converted) == 4 * model.config.n_layer
    assert all(type(model.get_submodule(name)).__name__ == "Float8Linear" for name in converted)
    assert type(model.lm_head).__name__ == "Linear"  # the head only with include_head
    after = dict(model.named_parameters())
    assert after.keys() == before.keys() and all(after[name] is before[name] for name in before)  # same tensors
    with_head = convert_to_fp8(small_modern_model(), include_head=True, emulate=True)
    assert with_head == sorted([*converted, "lm_head"])


def test_fp8_emulation_is_within_bf16_tolerance_of_the_bf16_path():
    bf16_model = small_modern_model()
    fp8_model = copy.deepcopy(bf16_model)
    convert_to_fp8(fp8_model, emulate=True)
    inputs, targets = windows(seed=0)
    bf16_loss, bf16_grads = bf16_loss_and_gradients(bf16_model, inputs, targets)
    fp8_loss, fp8_grads = bf16_loss_and_gradients(fp8_model, inputs, targets)
    torch.testing.assert_close(fp8_loss, bf16_loss, rtol=4e-3, atol=0)  # bf16 keeps 8 bits: 2^-8 = 3.9e-3
    for name, grad in bf16_grads.items():  # e4m3 keeps 4 bits per element; the sums average the rounding out
        similarity = torch.nn.functional.cosine_similarity(fp8_grads[name].flatten(), grad.flatten(), dim=0)
        assert similarity > 0.97, name
    # Training: the same 30 AdamW steps on a fixed batch (learnt by heart) reach the same loss.
    finals = []
    for model in (bf16_model, fp8_model):
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(30):
            loss, _ = bf16_loss_and_gradients(model, inputs, targets)
            optimizer.step()
        finals.append(loss.item())
    assert finals[0] < 0.6 * bf16_loss.item()  # it learnt
    assert finals[1] == pytest.approx(finals[0], rel=0.02)


def test_fp8_model_traces_as_one_graph():
    model = small_modern_model()
    convert_to_fp8(model, emulate=True)
    inputs, targets = windows(seed=1, rows=2, seq_len=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explanation = torch._dynamo.explain(lambda x, y: model(input_ids=x, shift_labels=y).loss)(inputs, targets)
    assert explanation.break_reasons == []
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)


def test_fp8_trained_model_exports_ordinary_weights(tmp_path):
    model = small_modern_model()
    convert_to_fp8(model, emulate=True)
    inputs, targets = windows(seed=2)
    bf16_loss_and_gradients(model, inputs, targets)
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    out = save_model_dir(model, tmp_path / "model")
    loaded = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert all(type(module) is not type(model.transformer.h[0].mlp.c_fc) for module in loaded.modules())
    assert type(loaded.transformer.h[0].mlp.c_fc) is torch.nn.Linear
    trained = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], rtol=0, atol=0, msg=name)


def test_fp8_is_refused_in_one_line_without_fp8_hardware(tmp_path, corpus):
    assert "compute capability 8.9" in fp8_unavailable(torch.device("cpu"))
    result = run_train(tmp_path / "run", "--data", str(corpus), "--fp8", "true", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: fp8: true needs a GPU with FP8 matmuls" in result.stderr and "set fp8: false" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
