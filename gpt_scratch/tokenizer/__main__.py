"""``python -m gpt_scratch.tokenizer train --data SOURCE --vocab_size N --out DIR``: a byte-level BPE of your own."""

from .. import cli
from .choices import PATTERNS, VAL_DOCS


def build_parser() -> cli.Parser:
    """The command line this program takes (``--help`` prints it)."""
    parser = cli.Parser(prog="python -m gpt_scratch.tokenizer", description="Tokenizer utilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a byte-level BPE on a text source (see gpt_scratch.tokenizer)")
    train.add_argument("--data", required=True, help="python-stdlib, fineweb-edu, a Hub dataset id, or local files")
    train.add_argument("--data_name", default=None, help="Hub dataset config, e.g. sample-10BT")
    train.add_argument("--data_split", default="train", help="the dataset split")
    train.add_argument("--text_column", default="text", help="the column that holds the text")
    train.add_argument(
        "--vocab_size", type=cli.positive_int, required=True, help="rounded up to a multiple of 128, e.g. 4096"
    )
    train.add_argument("--out", required=True, help="the tokenizer directory to write (must not hold one)")
    train.add_argument("--pattern", default="gpt2-no-lookahead", choices=list(PATTERNS), help="the regex split")
    train.add_argument(
        "--val_docs", type=int, default=VAL_DOCS, help="first documents held out, as train.py's val_docs"
    )
    train.add_argument("--max_docs", type=cli.positive_int, default=None, help="train on at most this many documents")
    train.add_argument(
        "--max_bytes", type=cli.positive_int, default=None, help="train on about this many bytes of text"
    )
    train.add_argument("--model_max_length", type=int, default=1024, help="the length the tokenizer's config records")
    train.add_argument("--chat_tokens", action="store_true", help="reserve the chat template's four special tokens "
                       "(a model pretrained with it needs no new rows for its chat fine-tune)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from ..data.sources import SourceTexts, TextSource  # after parsing: --help answers before they load
    from .trainer import train_tokenizer

    source = TextSource(args.data, args.data_name, args.data_split, args.text_column)
    corpus = SourceTexts(source, args.val_docs, args.max_docs, args.max_bytes)
    summary = train_tokenizer(corpus, args.vocab_size, args.out, args.pattern, args.model_max_length, args.chat_tokens)
    print(summary.line(args.out))


if __name__ == "__main__":
    cli.run(main)
