"""A package's names imported on first use (PEP 562), so that ``python -m gpt_scratch.data --help`` or a mistake on the
command line answers at once instead of after torch and transformers have loaded (seconds on a busy machine)."""

import importlib
from collections.abc import Callable


def lazy_exports(package: str, homes: dict[str, list[str]]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names live in submodules: ``homes`` maps each
    submodule (relative, ``.shards``) to the names it defines."""
    home_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in home_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home_of[name], package), name)

    def __dir__() -> list[str]:
        return sorted(home_of)

    return __getattr__, __dir__
