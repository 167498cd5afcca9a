"""``python -m gpt_scratch.data prepare SOURCE OUT_DIR``: tokenize a source into uint16 shards."""

import argparse

from .. import cli
from .shards import prepare_shards
from .sources import TextSource


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpt_scratch.data", description="Data utilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="tokenize a source into uint16 shards")
    prepare.add_argument("source", help="fineweb-edu, python-stdlib, a Hub dataset id, or local files")
    prepare.add_argument("out_dir")
    prepare.add_argument("--name", default=None, help="Hub dataset config, e.g. sample-100BT")
    prepare.add_argument("--split", default="train")
    prepare.add_argument("--text-column", default="text")
    prepare.add_argument("--shard-tokens", type=int, default=100_000_000)
    args = parser.parse_args(argv)
    source = TextSource(args.source, args.name, args.split, args.text_column)
    paths = prepare_shards(source, args.out_dir, args.shard_tokens)
    print(f"{len(paths)} shards in {args.out_dir}")


if __name__ == "__main__":
    cli.run(main)
