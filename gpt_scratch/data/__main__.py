"""``python -m gpt_scratch.data prepare SOURCE OUT_DIR [--tokenizer DIR]``: tokenize a source into uint16 shards."""

from .. import cli


def build_parser() -> cli.Parser:
    """The command line this program takes (``--help`` prints it)."""
    parser = cli.Parser(prog="python -m gpt_scratch.data", description="Data utilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="tokenize a source into uint16 shards")
    prepare.add_argument("source", help="fineweb-edu, python-stdlib, a Hub dataset id, or local files")
    prepare.add_argument("out_dir", help="the shard directory to write (a rerun continues an unfinished one)")
    prepare.add_argument("--name", default=None, help="Hub dataset config, e.g. sample-100BT")
    prepare.add_argument("--split", default="train", help="the dataset split")
    prepare.add_argument("--text_column", default="text", help="the column that holds the text")
    prepare.add_argument("--shard_tokens", type=int, default=100_000_000, help="tokens per shard file (2 bytes each)")
    prepare.add_argument("--tokenizer", default="gpt2", help="gpt2, or a directory from gpt_scratch.tokenizer train")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from ..tokenizer import load_tokenizer  # after parsing: --help answers before torch loads
    from .shards import prepare_shards
    from .sources import TextSource

    source = TextSource(args.source, args.name, args.split, args.text_column)
    tokenizer = load_tokenizer(args.tokenizer)  # a bad directory fails before anything is written
    paths = prepare_shards(source, args.out_dir, args.shard_tokens, tokenizer)
    print(f"{len(paths)} shards in {args.out_dir}")


if __name__ == "__main__":
    cli.run(main)
