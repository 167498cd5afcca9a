"""Run under torchrun (or alone): read batches of a source as this process's share and write what it saw.

torchrun --nproc_per_node 2 tests/dist_data_worker.py SOURCE OUT_DIR --batches N [--workers W]
    [--save-after K --state STATE] [--load-state STATE]
"""

import argparse
import json
import os

import torch

from gpt_scratch.data import PackedBatches, TextSource


class WithWorkerId(torch.utils.data.IterableDataset):
    """Tags each batch with the DataLoader worker that made it, so the test can rebuild each worker's stream."""

    def __init__(self, data: PackedBatches) -> None:
        self.data = data

    def __iter__(self):
        worker = torch.utils.data.get_worker_info().id
        for batch in self.data:
            yield worker, batch


def packed_batches(source: str, rank: int, world: int, batch_size: int = 2, seq_len: int = 32, val_docs: int = 0,
                   epochs: int | None = None) -> PackedBatches:  # fmt: skip
    """This rank's share of ``source``, as every process of the tests reads it (the tests build it in-process too)."""
    return PackedBatches(TextSource(source), batch_size, seq_len, rank=rank, world_size=world, seed=7,
                         shuffle_buffer=20, val_docs=val_docs, epochs=epochs)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out_dir")
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--val-docs", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--save-after", type=int, default=None, help="save the data state after this many batches")
    parser.add_argument("--state", default=None, help="where --save-after writes (per-rank suffix added)")
    parser.add_argument("--load-state", default=None, help="resume from this state (per-rank suffix added)")
    args = parser.parse_args()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    data = packed_batches(args.source, rank, world, args.batch_size, args.seq_len, args.val_docs, args.epochs)
    if args.load_state:
        data.load_state_dict(torch.load(f"{args.load_state}.{rank}", weights_only=True))
    if args.workers:
        batches = iter(torch.utils.data.DataLoader(WithWorkerId(data), batch_size=None, num_workers=args.workers))
    else:
        batches = ((0, batch) for batch in data)
    seen = []
    for index in range(args.batches):
        batch = next(batches, None)
        if batch is None:
            break
        worker, (inputs, targets) = batch
        seen.append({"worker": int(worker), "inputs": inputs.tolist(), "targets": targets.tolist()})
        if args.save_after is not None and index + 1 == args.save_after:
            torch.save(data.state_dict(), f"{args.state}.{rank}")
    with open(os.path.join(args.out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main()
