"""The modern recipe in train.py: its model options and optimizer from the command line, Muon beside AdamW with a
learning rate per role, warmup-stable-decay, exact resume, 2 processes like 1, and clear errors before step 1."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_runs import MODERN_ARGS, run_train, tiny_shards, trainer_state

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.train_config import TrainConfig
from gpt_scratch.training import apply_schedule, build_optimizers, lr_multiplier, role_learning_rates
from gpt_scratch.training.muon import Muon

from conftest import MODERN, TINY


def roles_of(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["role"]: {names[id(p)] for p in g["params"]} for g in optimizer.param_groups}


def test_muon_takes_exactly_the_blocks_matrices_and_adamw_the_rest_each_role_at_its_lr():
    model = GPTScratchForCausalLM(GPTScratchConfig(**TINY, **MODERN))
    config = TrainConfig(optimizer="muon", lr=1e-3, matrix_lr=0.02, embedding_lr=0.3, head_lr=0.004)
    muon, adamw = build_optimizers(model, config, torch.device("cpu"))
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    blocks_matrices = {n for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2}
    assert roles_of(muon, model) == {"matrix": blocks_matrices}
    adamw_roles = roles_of(adamw, model)
    assert adamw_roles["embedding"] == {"transformer.wte.weight"} and adamw_roles["head"] == {"lm_head.weight"}
    assert adamw_roles["gain"] == {n for n, p in model.named_parameters() if p.dim() == 1}
    assert {g["role"]: g["lr"] for g in adamw.param_groups} == {"embedding": 0.3, "head": 0.004, "gain": 1e-3}
    assert muon.param_groups[0]["lr"] == 0.02 and muon.param_groups[0]["momentum"] == 0.95


class BFloat16Muon(Muon):
    """Ours with the iteration in bfloat16, as on CUDA."""

    @staticmethod
    def iteration_dtype(param):
        return torch.bfloat16


def muon_steps(optimizer_class, steps: int = 5, **kwargs) -> list[torch.Tensor]:
    """A tall, a wide and a square matrix after ``steps`` updates from the same gradients."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*shape, generator=generator)) for shape in ((48, 16), (16, 40), (24, 24))]
    optimizer = optimizer_class(params, lr=0.02, weight_decay=0.1, **kwargs)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    return [param.detach().clone() for param in params]


@pytest.mark.parametrize("kwargs", [{}, {"nesterov": False, "adjust_lr_fn": "match_rms_adamw"}])
def test_our_muon_in_bfloat16_is_torchs_bitwise_and_in_float32_closer_to_the_exact_iteration(kwargs):
    """On CUDA ours is torch.optim.Muon to the bit; on CPUs it iterates in float32 (bfloat16 there is 10-15x slower
    without native instructions), which follows the float64 iteration more closely than torch's bfloat16 does."""
    torch_muon = muon_steps(torch.optim.Muon, **kwargs)
    for ours, theirs in zip(muon_steps(BFloat16Muon, **kwargs), torch_muon):
        assert torch.equal(ours, theirs)

    class Float64Muon(Muon):
        @staticmethod
        def iteration_dtype(param):
            return torch.float64

    exact = muon_steps(Float64Muon, **kwargs)
    for ours, theirs, truth in zip(muon_steps(Muon, **kwargs), torch_muon, exact):
        assert (ours - truth).abs().max() < (theirs - truth).abs().max() / 20


def test_gpt2_recipe_keeps_adamw_with_decay_on_2d_tensors_only():
    model = GPTScratchForCausalLM(GPTScratchConfig(**TINY))
    (adamw,) = build_optimizers(model, TrainConfig(), torch.device("cpu"))
    decays = {g["role"]: g["weight_decay"] for g in adamw.param_groups}
    assert decays == {"embedding": 0.1, "matrix": 0.1, "gain": 0.0}  # tied head: the embedding, once
    counted = sum(p.numel() for g in adamw.param_groups for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters())


def test_muon_on_a_tensor_it_cannot_take_is_refused_by_name():
    model = GPTScratchForCausalLM(GPTScratchConfig(**TINY))
    model.transformer.h[1].mlp.mixer = torch.nn.Parameter(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"muon orthogonalises 2-D matrices, but transformer.h.1.mlp.mixer has shape "
                                         r"\(2, 3, 4\); train this model with --optimizer adamw"):  # fmt: skip
        build_optimizers(model, TrainConfig(optimizer="muon"), torch.device("cpu"))


def test_muon_under_fsdp_is_refused_before_the_model_is_wrapped_and_ddp_is_not():
    from accelerate.utils import DistributedType

    from gpt_scratch.training import check_optimizer_fits_parallelism

    muon = TrainConfig(optimizer="muon")
    with pytest.raises(ValueError, match="optimizer muon needs each matrix whole, and FSDP shards them"):
        check_optimizer_fits_parallelism(muon, DistributedType.FSDP)
    check_optimizer_fits_parallelism(muon, DistributedType.MULTI_GPU)
    check_optimizer_fits_parallelism(TrainConfig(), DistributedType.FSDP)  # AdamW shards fine


def test_wsd_warms_up_holds_then_decays_linearly_to_min_lr():
    config = TrainConfig(max_steps=100, warmup_steps=10, lr=1e-2, min_lr=1e-3, lr_schedule="wsd", decay_fraction=0.3)
    factors = [lr_multiplier(step, config) for step in range(100)]
    for step in range(10):
        assert factors[step] == pytest.approx((step + 1) / 10)
    assert all(f == 1.0 for f in factors[10:70])
    for step in range(70, 100):  # from 1 at step 70 towards 0.1 at step 100, a straight line
        assert factors[step] == pytest.approx(1 - (step - 70) / 30 * 0.9)


def test_resumed_schedule_gives_every_group_its_roles_new_learning_rate():
    model = GPTScratchForCausalLM(GPTScratchConfig(**TINY, **MODERN))
    old = TrainConfig(optimizer="muon", matrix_lr=0.02, embedding_lr=0.3, lr_schedule="wsd", max_steps=100)
    new = TrainConfig(optimizer="muon", matrix_lr=0.01, embedding_lr=0.1, lr_schedule="wsd", max_steps=200)
    saved = []
    for optimizer in build_optimizers(model, old, torch.device("cpu")):  # the checkpoint's run
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, old))
        saved.append((optimizer.state_dict(), scheduler.state_dict()))
    for optimizer, (optimizer_state, scheduler_state) in zip(build_optimizers(model, new, torch.device("cpu")), saved):
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, new))  # this run's
        optimizer.load_state_dict(optimizer_state)  # the checkpoint's learning rates come back with the state
        scheduler.load_state_dict(scheduler_state)
        apply_schedule(scheduler, optimizer, 190, role_learning_rates(new))
        factor = lr_multiplier(190, new)  # in the new schedule's decay
        assert 0.1 < factor < 1
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(role_learning_rates(new)[group["role"]] * factor), group["role"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"optimizer": "sgd"}, r"optimizer \('sgd'\) must be one of adamw, muon"),
        ({"lr_schedule": "linear"}, r"lr_schedule \('linear'\) must be one of cosine, wsd"),
        ({"decay_fraction": 0.0}, r"decay_fraction \(0.0\) must be in \(0, 1\]"),
        ({"decay_fraction": 1.5}, r"decay_fraction \(1.5\) must be in \(0, 1\]"),
        (
            {"lr_schedule": "wsd", "max_steps": 100, "warmup_steps": 50, "decay_fraction": 0.6},
            r"warmup_steps \(50\) and the decay \(decay_fraction 0.6 of max_steps 100 = 60 steps\) overlap",
        ),
        ({"matrix_lr": -0.02}, r"matrix_lr \(-0.02\) must be positive"),
        ({"muon_momentum": 1.0}, r"muon_momentum \(1.0\) must be in \[0, 1\)"),
        ({"position_embedding_type": "learned"}, r"position_embedding_type \('learned'\) must be one of"),
        ({"final_logit_softcapping": -1.0}, r"final_logit_softcapping \(-1.0\) must be positive"),
    ],  # fmt: skip
)
def test_bad_recipe_values_are_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_bad_schedule_on_the_command_line_fails_before_step_1_and_writes_nothing(tmp_path, corpus):
    result = run_train(tmp_path / "run", "--data", str(corpus), "--lr_schedule", "wsd", "--decay_fraction", "2",
                       check=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: decay_fraction (2.0) must be in (0, 1]" in result.stderr
    assert not (tmp_path / "run").exists()


def test_modern_recipe_from_the_command_line_trains_and_exports_every_option(tmp_path, corpus):
    args = ["--data", str(corpus), "--max_steps", "30", "--tokens_per_step", "256", "--checkpoint_interval", "30",
            "--hellaswag_data", "null", *MODERN_ARGS]  # fmt: skip
    result = run_train(tmp_path / "run", *args)
    startup = next(line for line in result.stdout.splitlines() if line.startswith("optimizer:"))
    groups = "Muon (matrix lr 0.02) + AdamW (embedding lr 0.01, gain lr 0.003, head lr 0.004)"
    assert startup.startswith(f"optimizer: {groups}")
    assert "wsd: warmup 2, constant, linear decay over the last 15 steps to x0.1 at step 30" in startup
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    expected = {**MODERN, "rope_theta": 10000.0, "final_logit_softcapping": 15.0, "zero_init_residual": True}
    assert {name: config[name] for name in expected} == expected
    losses = [loss for _, loss in trainer_state(tmp_path / "run")["history"]["train_loss"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    exported = GPTScratchForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert exported.lm_head.weight is not exported.transformer.wte.weight and exported.transformer.wpe is None


def test_two_processes_with_muon_train_like_one(tmp_path, corpus):
    shards = tmp_path / "shards"
    tiny_shards(corpus, shards, shard_tokens=3000)
    common = ["--data", str(corpus), "--token_shards", str(shards), "--max_steps", "8", "--tokens_per_step", "256",
              "--checkpoint_interval", "8", "--hellaswag_data", "null", *MODERN_ARGS]  # fmt: skip
    run_train(tmp_path / "one", *common)
    run_train(tmp_path / "two", *common, nproc=2)
    one, two = trainer_state(tmp_path / "one")["history"], trainer_state(tmp_path / "two")["history"]
    for (_, a), (_, b) in zip(one["train_loss"], two["train_loss"], strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert one["val_loss"][-1][1] == pytest.approx(two["val_loss"][-1][1], rel=1e-4)
    w1 = load_file(tmp_path / "one" / "model" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "model" / "model.safetensors")
    for name in w1:
        # Not elementwise: the zero-initialised projections' first gradients are nearly rank-deficient, and Muon's
        # orthogonalisation lifts every singular direction to the same size, fp32 summation-order noise included
        # (measured: up to 5% of such a matrix's norm after 8 steps; the norm gains agree to 1e-4).
        relative = ((w1[name] - w2[name]).norm() / w1[name].norm()).item()
        assert relative < (0.1 if w1[name].dim() == 2 else 1e-3), (name, relative)


def test_resume_refuses_another_optimizer_or_architecture_and_applies_new_learning_rates(tmp_path, corpus):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data", "null", "--max_steps", "4",
            "--checkpoint_interval", "2", *MODERN_ARGS]  # fmt: skip
    run_train(run_dir, *args)
    for change, named in (
        (["--optimizer", "adamw"], "optimizer: 'muon' in the checkpoint, 'adamw' now"),
        (["--qk_norm", "false"], "qk_norm: True in the checkpoint, False now"),
        (["--position_embedding_type", "absolute"], "position_embedding_type: 'rope' in the checkpoint, 'absolute'"),
        (["--muon_momentum", "0.9"], "muon_momentum: 0.95 in the checkpoint, 0.9 now"),
    ):
        result = run_train(run_dir, *args, "--max_steps", "6", *change, "--resume", "auto", check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert "cannot resume" in result.stderr and named in result.stderr, result.stderr[-1000:]
    resumed = run_train(run_dir, *args, "--max_steps", "8", "--matrix_lr", "0.01", "--lr_schedule", "cosine",
                        "--resume", "auto")  # fmt: skip
    assert "matrix_lr: 0.02 -> 0.01" in resumed.stdout and "lr_schedule: 'wsd' -> 'cosine'" in resumed.stdout
    assert re.search(r"resumed from .*step-000004 at step 4", resumed.stdout)


def test_muon_without_matrix_lr_runs_at_its_own_scale_says_so_and_recovers_at_a_tenth(tmp_path, corpus):
    """Not AdamW's lr (a tenth of Muon's usual scale) without a word: modded-nanogpt's and nanochat's 0.02."""
    from gpt_scratch.divergence import lower_learning_rates

    config = TrainConfig(optimizer="muon", lr=3e-3)
    model = GPTScratchForCausalLM(GPTScratchConfig(**TINY))
    muon, adamw = build_optimizers(model, config, torch.device("cpu"))
    assert isinstance(muon, Muon) and [group["lr"] for group in muon.param_groups] == [0.02]
    assert {group["lr"] for group in adamw.param_groups} == {3e-3}
    assert lower_learning_rates(config)["matrix_lr"] == pytest.approx(0.002)  # the recovery lowers Muon's too
    assert role_learning_rates(TrainConfig(lr=3e-3))["matrix"] == 3e-3  # AdamW's matrices keep lr
    args = ["--data", str(corpus), "--tokens_per_step", "128", "--hellaswag_data", "null", "--max_steps", "2",
            "--optimizer", "muon"]  # fmt: skip
    result = run_train(tmp_path / "run", *args)
    assert "Muon (matrix lr 0.02) + AdamW" in result.stdout and "matrix_lr not set: Muon's own scale" in result.stdout


def test_muon_under_two_processes_splits_the_iterations_and_gives_one_process_weights(tmp_path):
    """Each process runs the Newton-Schulz iteration for its share of the matrices (3 and 2 of 5, per step) and
    broadcasts the results: the weights are bitwise those of one process running them all."""
    import subprocess
    import sys

    from dist_muon_worker import muon_steps
    from train_runs import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
               str(Path(__file__).parent / "dist_muon_worker.py"), str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads((tmp_path / f"calls-{rank}.json").read_text()) for rank in (0, 1)] == [6, 4]
    distributed = torch.load(tmp_path / "weights.pt")
    for got, expected in zip(distributed, muon_steps(), strict=True):
        assert torch.equal(got, expected)
