"""What several benchmarks take on their command line alike: the shape of a training step and how it runs."""

import argparse


def step_options(parser: argparse.ArgumentParser, seq_len: int, micro_batch: int) -> argparse.ArgumentParser:
    """``--seq-len``, ``--micro-batch``, ``--bf16`` and ``--compile``, with this benchmark's defaults."""
    parser.add_argument("--seq-len", type=int, default=seq_len, help="tokens per window")
    parser.add_argument("--micro-batch", type=int, default=micro_batch, help="windows per forward")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (a GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    return parser
