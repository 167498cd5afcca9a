"""``python-docs-chat``: a conversation set every Python ships with, for a chat fine-tune with no download.

Questions about standard-library functions and classes ("What does `json.dumps` do?"), each answered by the first
paragraph of the object's own docstring, as ``{"messages": [...]}`` rows. The rows go module by module in a fixed
order, so the first ``val_docs`` rows (what a run holds out) are the questions about the first modules: whole
modules the model never trains on. The set is written once per Python version to a JSON-lines file in the cache
(``~/.cache/gpt_scratch``, or ``$XDG_CACHE_HOME``) and read from there as any local file is.
"""

import importlib
import inspect
import json
import os
import re
import sys
from pathlib import Path

NAME = "python-docs-chat"
# Modules that import without side effects on every platform, in the order their questions are written: the first
# ones are held out by a run's val_docs.
MODULES = (
    "textwrap", "difflib", "heapq", "bisect", "statistics", "fractions", "shlex", "fnmatch",
    "json", "re", "math", "itertools", "functools", "collections", "string", "random", "datetime", "pathlib",
    "shutil", "glob", "copy", "csv", "base64", "hashlib", "hmac", "zlib", "gzip", "zipfile", "tarfile",
    "urllib.parse", "html", "pprint", "operator", "dataclasses", "enum", "decimal", "uuid", "time", "calendar",
    "argparse", "logging", "tempfile", "struct", "unicodedata", "secrets", "contextlib", "inspect", "ast",
    "keyword", "os.path", "io", "array", "queue", "threading", "subprocess", "socket", "sqlite3", "email.utils",
    "http.client", "xml.etree.ElementTree", "typing", "abc", "weakref", "types", "codecs", "locale", "gettext",
    "platform", "sys", "os", "stat", "filecmp", "linecache", "traceback", "warnings", "timeit", "cmath", "numbers",
)  # fmt: skip
QUESTIONS = ("What does `{name}` do?", "Explain `{name}`.", "What is `{name}` for?")
SYSTEM = "You answer questions about Python's standard library in one short paragraph."
MAX_ANSWER = 400  # characters: the first paragraph, cut at a sentence where it runs longer


def first_paragraph(doc: str) -> str | None:
    """The docstring's first paragraph as one line, without a signature line; None when there is nothing to say."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
    paragraphs = [p for p in paragraphs if p and not re.match(r"^[\w.]+\(.*\)( -> .*)?$", p)]
    if not paragraphs or len(paragraphs[0]) < 20:
        return None
    text = paragraphs[0]
    if len(text) > MAX_ANSWER:
        cut = text.rfind(". ", 0, MAX_ANSWER)
        text = text[: cut + 1] if cut > 0 else text[:MAX_ANSWER].rsplit(" ", 1)[0] + "..."
    return text


def conversations() -> list[dict]:
    """Every question and answer, module by module; the question's wording varies with the object's name."""
    rows = []
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a module this build lacks (sqlite3 without its library)
            continue
        for name in sorted(getattr(module, "__all__", None) or dir(module)):
            obj = getattr(module, name, None)
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
                continue
            home = (getattr(obj, "__module__", None) or module.__name__).lstrip("_").split(".")[0]
            if home != module.__name__.lstrip("_").split(".")[0]:
                continue  # imported from elsewhere: asked about in its own module
            answer = first_paragraph(obj.__doc__ or "")
            if answer is None:
                continue
            qualified = f"{module_name}.{name}"
            question = QUESTIONS[sum(map(ord, qualified)) % len(QUESTIONS)].format(name=qualified)
            rows.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}]})  # fmt: skip
    return rows


def python_docs_chat_file() -> str:
    """The set's JSON-lines file, written once (atomically) for this Python version."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt_scratch"
    version = ".".join(map(str, sys.version_info[:3]))
    path = cache / f"{NAME}-{version}.jsonl"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in conversations()))
        os.replace(partial, path)
    return str(path)
