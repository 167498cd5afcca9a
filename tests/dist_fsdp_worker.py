"""Run under torchrun: train the debug GPT with FSDP2 (``fully_shard`` per block, then the whole model) on CPU/gloo,
checkpoint the full state after step 2, resume a fresh sharded copy from it, and export what both reach.

torchrun --nproc_per_node 2 tests/dist_fsdp_worker.py OUT_DIR
Writes (rank 0) OUT_DIR/continuous (a model directory), OUT_DIR/resumed (the same after resume) and losses.json.
"""

import io
import json
import sys
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, save_model_dir
from gpt_scratch.training import weights_are_finite
from gpt_scratch.training.head_loss import chunked_head_cross_entropy

STEPS, LR = 3, 1e-3


def config() -> GPTScratchConfig:
    return GPTScratchConfig.from_preset("tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # no dropout RNG


def batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 50257, (4, 16), generator=generator) for _ in range(STEPS)]


def sharded_model_and_optimizer() -> tuple[GPTScratchForCausalLM, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(config())
    # train.py's loss: the head's weight is read inside the root's forward, where FSDP has gathered it. (The test's
    # one-process reference runs transformers' loss on the full logits.)
    model.head_loss_function = partial(chunked_head_cross_entropy, chunk_size=16)  # 2 chunks of each process's 32
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    return model, torch.optim.AdamW(model.parameters(), lr=LR)


def step(model, optimizer, batch: torch.Tensor) -> float:
    rows = batch[dist.get_rank() :: dist.get_world_size()]  # each process half of the global batch
    loss = model(input_ids=rows, labels=rows).loss
    loss.backward()  # FSDP averages the gradients across processes: the full batch's mean-loss gradient
    optimizer.step()
    optimizer.zero_grad()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    return mean.item() / dist.get_world_size()


def muon_on_shards_is_refused(model) -> str:
    """Muon must see each matrix whole: on FSDP shards, building it is refused with a clear message (returned)."""
    from gpt_scratch.train_config import TrainConfig
    from gpt_scratch.training import build_optimizers

    try:
        build_optimizers(model, TrainConfig(optimizer="muon", matrix_lr=0.02), torch.device("cpu"))
    except ValueError as error:
        return str(error)
    raise AssertionError("Muon was built on FSDP shards")


def full_weights(model) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights, gathered to rank 0 (empty elsewhere)."""
    full, _ = get_state_dict(model, [], options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return full


def export(weights: dict[str, torch.Tensor], out_dir: Path) -> None:
    """Into a plain model, saved as under DDP: one model directory (after the process group is gone: transformers'
    save_pretrained synchronises processes when one is initialised)."""
    plain = GPTScratchForCausalLM(config())
    plain.load_state_dict(weights)
    save_model_dir(plain, out_dir)


def check_the_nan_guard_agrees_across_shards(model) -> None:
    """train.py's weight check on sharded (DTensor) parameters: a NaN in one process's shard is seen by all."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)  # joins the process group torchrun set up
    assert weights_are_finite(model, accelerator)
    if dist.get_rank() == 1:
        with torch.no_grad():
            next(model.parameters()).to_local().view(-1)[0] = float("nan")
    assert not weights_are_finite(model, accelerator), f"rank {dist.get_rank()} missed the NaN"


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    data = batches()
    model, optimizer = sharded_model_and_optimizer()
    losses = [step(model, optimizer, data[0]), step(model, optimizer, data[1])]
    # A full-state checkpoint after step 2 (model and optimizer, gathered), then step 3.
    options = StateDictOptions(full_state_dict=True)  # every process holds the full state (as a saved file would)
    model_state, optimizer_state = get_state_dict(model, optimizer, options=options)
    saved = io.BytesIO()  # through bytes, as a checkpoint file goes: nothing shared with the live training state
    torch.save((model_state, optimizer_state), saved)
    saved.seek(0)
    model_state, optimizer_state = torch.load(saved, weights_only=True)
    losses.append(step(model, optimizer, data[2]))
    continuous = full_weights(model)
    # A fresh sharded model and optimizer resume from the checkpoint and take step 3 again.
    resumed, resumed_optimizer = sharded_model_and_optimizer()
    set_state_dict(resumed, resumed_optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                   options=options)  # fmt: skip
    step(resumed, resumed_optimizer, data[2])
    resumed_weights = full_weights(resumed)
    check_the_nan_guard_agrees_across_shards(resumed)
    muon_refusal = muon_on_shards_is_refused(resumed)
    rank = dist.get_rank()
    dist.destroy_process_group()
    if rank == 0:
        export(continuous, out / "continuous")
        export(resumed_weights, out / "resumed")
        (out / "losses.json").write_text(json.dumps(losses))
        (out / "muon_refusal.txt").write_text(muon_refusal)


if __name__ == "__main__":
    main()
