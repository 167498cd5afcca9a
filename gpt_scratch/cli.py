"""Command-line entry points print a user's mistake as one clear line, not a traceback ending in it.

``GPT_SCRATCH_TRACEBACK=1`` shows the traceback (for bug reports). Anything that is not a user-facing error
(a bug) keeps its traceback.
"""

import argparse
import os
import sys
from collections.abc import Callable

from .storage import StorageError

# What bad input raises here: a missing file or Hub repo (OSError covers both), a value that does not fit, the Hub
# unreachable, a disk that is full or read-only. Each message names the problem and the fix.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ConnectionError, StorageError)


def run(main: Callable[[], object], extra_errors: tuple[type[BaseException], ...] = ()) -> None:
    try:
        main()
    except USER_ERRORS + extra_errors as error:
        if os.environ.get("GPT_SCRATCH_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def check_local_model(name_or_path: str, files: bool = True) -> None:
    """A path that cannot be a Hub id (``./x``, ``/x``, ``~/x``, ``a/b/c``), or whose first part is a local directory
    (``runs/x``, beside ``runs/``), must be an existing directory: say so, instead of the Hub client's complaint about
    repo id characters or about reaching the Hub. With ``files``, a local directory's files are checked before
    anything loads them (``gpt_scratch.model_files``: a damaged or hostile file is one line naming it)."""
    first = name_or_path.split("/", 1)[0]
    looks_local = (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
                   or ("/" in name_or_path and os.path.isdir(first)))  # fmt: skip
    directory = os.path.expanduser(name_or_path)
    if looks_local and not os.path.isdir(directory):
        raise FileNotFoundError(f"model directory not found: {name_or_path} (a Hub model is named like 'user/model')")
    if files and os.path.isdir(directory):
        from .model_files import check_model_directory

        check_model_directory(directory)


def positive_int(text: str) -> int:
    """An argparse type: a count that must be at least 1 (``--limit -1`` must not mean "all but the last", nor
    ``--max_bytes 0`` train on nothing)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (leave the option out for no limit)")
    return value


class _Commands(argparse._SubParsersAction):
    """Subcommands whose own ``--help`` opens with what they do (their one-line help)."""

    def add_parser(self, name: str, **kwargs):
        kwargs.setdefault("description", kwargs.get("help"))
        return super().add_parser(name, **kwargs)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; each option's default after its meaning, unless the meaning says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse as every program here uses it: both spellings of every option are taken (``--max_tokens`` and
    ``--max-tokens``, as train.py takes both), ``--help`` shows one (snake_case, train.py's) with each option's
    meaning and default, and each subcommand's ``--help`` says what it does."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self.spelled_as_known(args), namespace)

    def spelled_as_known(self, args: list[str]) -> list[str]:
        """``args`` with each option in the spelling this parser knows (``-`` and ``_`` read alike)."""
        known = {name: name for action in self._actions for name in action.option_strings}
        known.update({name.replace("-", "_"): name for name in list(known) if name.startswith("--")})
        spelled = []
        for index, arg in enumerate(args):
            if arg == "--":
                return spelled + args[index:]
            if arg.startswith("--"):
                key, equals, value = arg.partition("=")
                arg = known.get("--" + key[2:].replace("-", "_"), key) + equals + value
            spelled.append(arg)
        return spelled
