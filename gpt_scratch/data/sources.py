"""Where documents come from: FineWeb-Edu on the Hub, this interpreter's standard library, a Hub id, or local files.

Every source goes through ``datasets.load_dataset(..., streaming=True)``, so FineWeb-Edu on the Hub and a local
mirror of it in parquet run the very same code; only the path differs.
"""

import copy
import functools
import glob
import os
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import IterableDataset, load_dataset

from ..conversations import conversation, data_columns, recognised_format
from ..tokenizer.trainer import NOT_TEXT_WARNING
from .python_docs_chat import NAME as PYTHON_DOCS_CHAT
from .python_docs_chat import python_docs_chat_file

FINEWEB_EDU = ("HuggingFaceFW/fineweb-edu", "sample-10BT")
PYTHON_STDLIB = "python-stdlib"
_BUILDERS = {".txt": "text", ".md": "text", ".py": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class TextSource:
    """Where documents come from.

    ``path`` is ``"fineweb-edu"`` (``HuggingFaceFW/fineweb-edu``, config ``sample-10BT`` unless ``name`` says
    otherwise), ``"python-stdlib"`` (the running interpreter's standard library sources: real text on every machine,
    no download), ``"python-docs-chat"`` (conversations about the standard library answered by its docstrings:
    ``python_docs_chat``), a Hub dataset id (with ``name`` and ``split``), or local files: a file, a directory, or a
    glob of ``.txt``/``.md``/``.py`` (one document per file), ``.jsonl``/``.json`` or ``.parquet`` files.
    """

    path: str = "fineweb-edu"
    name: str | None = None
    split: str = "train"
    text_column: str = "text"
    format: str | None = None  # text, messages, prompt_completion, instruction; None: recognised from the columns


def _local_files(path: str) -> list[str] | None:
    """The files a local path, directory or glob names (sorted), or None when ``load_dataset(path)`` reads it as is:
    a Hub dataset id, or a directory of parquet/json files laid out like one."""
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"no files match the glob {path!r}")
        return files
    local = Path(path).expanduser()
    if local.is_file():
        return [str(local)]
    if local.is_dir():
        files = sorted(str(f) for f in local.rglob("*") if f.is_file() and f.suffix in _BUILDERS)
        if not files:
            raise FileNotFoundError(f"directory {path} has no {'/'.join(_BUILDERS)} files")
        if all(_BUILDERS[Path(f).suffix] != "text" for f in files) and not any(ch in path for ch in "*?["):
            return None  # a dataset directory (e.g. a Hub mirror): load_dataset reads it exactly as it reads the Hub
        return files
    if re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", path) and Path(path).suffix not in _BUILDERS:
        return None  # a Hub dataset id such as "HuggingFaceFW/fineweb-edu"
    raise FileNotFoundError(f"no such file or directory: {path}")


@functools.cache
def _stdlib_files() -> tuple[str, ...]:
    """The standard library's sources (listed once per process: the tree walk takes seconds)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return tuple(sorted(str(f) for f in stdlib.rglob("*.py") if "site-packages" not in f.parts and f.stat().st_size))


def open_documents(source: TextSource) -> IterableDataset:
    """The source as a streaming dataset with one column, ``text``.

    A run opens its source several times (tokenizer, validation documents, training stream), and for a few thousand
    local files ``load_dataset`` spends seconds resolving and probing each one. So the opened dataset is kept for
    the process, keyed by the source and by every local file's size and modification time (a changed file is read
    anew), and each caller gets its own copy.
    """
    path, name, data_files = source.path, source.name, None
    if path == "fineweb-edu":
        path, name = FINEWEB_EDU[0], name or FINEWEB_EDU[1]
    elif path == PYTHON_STDLIB:
        data_files = _stdlib_files()
    elif path == PYTHON_DOCS_CHAT:
        data_files = [python_docs_chat_file()]
    else:
        data_files = _local_files(path)
    files = None if data_files is None else tuple(data_files)
    listed = files if files is not None else _dataset_directory_files(path)
    fingerprint = None if listed is None else tuple((f, *_size_and_mtime(f)) for f in listed)
    return _own_copy(_opened(source, path, name, files, fingerprint))


def _own_copy(dataset: IterableDataset) -> IterableDataset:
    """A caller's own copy of an opened dataset, sharing what the process shares: `datasets` keeps a reference to
    huggingface_hub's file-system instance cache on the dataset (for pickling), and copying that cache builds new
    instances keyed by the thread, inside the copy, from any thread but the one that made them (the tokenizer
    trainer reads its corpus on a thread of its own): "dictionary changed size during iteration"."""
    process_wide = getattr(dataset, "_IterableDataset__hffs_cache", None)
    return copy.deepcopy(dataset, {} if process_wide is None else {id(process_wide): process_wide})


def _dataset_directory_files(path: str) -> list[str] | None:
    """Every file of a local dataset directory (a Hub mirror), so that a changed one is noticed; None for the Hub."""
    local = Path(path).expanduser()
    return sorted(str(f) for f in local.rglob("*") if f.is_file()) if local.is_dir() else None


def _size_and_mtime(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


_FORMATS: dict[TextSource, str] = {}  # each opened source's format (set where its columns are read)


@functools.lru_cache(maxsize=8)
def _opened(
    source: TextSource, path: str, name: str | None, files: tuple[str, ...] | None, fingerprint: tuple | None
) -> IterableDataset:
    """``load_dataset`` of the source; ``fingerprint`` (the local files' sizes and times) is only part of the key."""
    data_files = None if files is None else list(files)
    kwargs: dict[str, Any] = {}
    if data_files is not None:
        builders = {_BUILDERS.get(Path(f).suffix) for f in data_files}
        if None in builders or len(builders) != 1:
            raise ValueError(
                f"local files must all be one kind ({', '.join(_BUILDERS)}); {path!r} gives "
                f"{sorted({Path(f).suffix for f in data_files})}"
            )
        path = builders.pop()
        if path == "text":
            kwargs["sample_by"] = "document"  # one document per file, so <|endoftext|> marks real boundaries
            kwargs["encoding_errors"] = "replace"  # a stray latin-1 byte (the stdlib has a few) is not fatal
    try:
        dataset = load_dataset(path, name=name, data_files=data_files, split=source.split, streaming=True, **kwargs)
    except StopIteration as error:  # how `datasets` reports local files with no rows when inferring their schema
        raise ValueError(f"data source {source.path} is empty: it holds no documents") from error
    except ConnectionError as error:
        raise ConnectionError(
            f"could not reach the Hugging Face Hub to stream {path!r} ({error}); check the network, or point the "
            "data source at local .parquet/.jsonl/.txt files (a file, directory or glob) in the same schema"
        ) from error
    columns = dataset.column_names
    if columns is None:  # schema unknown until read: look at the first row
        first = next(iter(dataset), None)
        if first is None:
            raise ValueError(f"data source {source.path} is empty: it holds no documents")
        columns = list(first)
    data_format = source.format or recognised_format(columns, source.text_column)
    if data_format is None:
        raise ValueError(
            f"text column {source.text_column!r} not found in {source.path}; columns are {columns}: pass the right one "
            "as text_column, or give conversation rows (messages; prompt and completion; instruction and output)"
        )
    missing = [column for column in data_columns(data_format, source.text_column) if column not in columns]
    if missing and not (data_format == "instruction" and missing == ["input"]):
        raise ValueError(f"{source.path} is read as {data_format} rows but has no {', '.join(missing)} column; "
                         f"its columns are {columns}")  # fmt: skip
    _FORMATS[source] = data_format
    if data_format != "text":  # each row as one document: the conversation, checked, as JSON (gpt_scratch.data.sft)
        return dataset.map(as_conversation_document, with_indices=True, remove_columns=columns,
                           fn_kwargs={"data_format": data_format, "path": source.path})  # fmt: skip
    if source.text_column != "text":
        dataset = dataset.rename_column(source.text_column, "text")
    return dataset.select_columns(["text"])


def as_conversation_document(row: dict[str, Any], index: int, data_format: str, path: str) -> dict[str, str]:
    """A conversation row as the one text column documents have: its checked common form, as JSON."""
    return {"text": conversation(row, data_format, f"{path}, row {index + 1}").to_json()}


def source_is_local(source: TextSource) -> bool:
    """Local files (or the standard library), not a Hub dataset streamed from the network."""
    path = source.path
    return (
        path in (PYTHON_STDLIB, PYTHON_DOCS_CHAT) or any(ch in path for ch in "*?[") or Path(path).expanduser().exists()
    )


def source_format(source: TextSource) -> str:
    """``text``, or the conversation format of the source's rows (its ``format``, or recognised from its columns)."""
    open_documents(source)
    return _FORMATS[source]


def validation_documents(source: TextSource, num_docs: int, fix: str | None = None) -> list[str]:
    """The first ``num_docs`` documents of the source in canonical order: the fixed validation set.

    Training skips exactly these (``DocumentStream(skip_docs=num_docs)``) on every run and process count, so at least
    one more must exist: a source they would take whole is refused here, before step 1, with ``fix`` (what to change:
    by default the run's ``val_docs``; ``{spare}`` in it becomes a count the source can spare).
    """
    docs = checked_texts([row["text"] for row in open_documents(source).take(num_docs + 1)], source)
    if len(docs) > num_docs:
        return docs[:num_docs]
    if not any(doc.strip() for doc in docs):  # an empty file is one empty document, not a corpus
        raise ValueError(f"{source.path} holds no text (only empty files or documents); point data at text")
    if len(docs) == 1:
        raise ValueError(
            f"{source.path} is a single document: validation holds out whole documents and training needs the rest; "
            "split it into several files (or JSON lines)"
        )
    fix = (fix or "lower val_docs, e.g. --val_docs {spare}").replace("{spare}", str(max(1, len(docs) // 10)))
    if len(docs) < num_docs:
        raise ValueError(f"{source.path} has only {len(docs)} documents, fewer than the {num_docs} asked for "
                         f"validation; {fix}")  # fmt: skip
    raise ValueError(f"the {num_docs} documents held out for validation are the whole of {source.path}, and none "
                     f"is left to train on; {fix}")  # fmt: skip


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters but tab, newline, return


def not_text_characters(text: str) -> int:
    """Characters that no text holds: undecodable bytes (read as U+FFFD) and control characters."""
    return text.count("\ufffd") + len(CONTROL.findall(text))


def not_text_warning(label: str, texts: list[str]) -> str | None:
    """A warning when more than 1% of ``texts``' characters are not text (a binary file given as data), or None."""
    fraction = sum(map(not_text_characters, texts)) / max(1, sum(map(len, texts)))
    if fraction <= NOT_TEXT_WARNING:
        return None
    return (
        f"WARNING: {fraction:.0%} of the characters of {label}'s held-out documents are not text (undecodable bytes "
        "or control characters): is it a binary file? Training reads it as it is; check the source"
    )


def checked_texts(texts: list, source: TextSource) -> list[str]:
    """``texts`` when every one is a string; else an error naming the source and the column (tiktoken would fail
    later, deep inside, with neither)."""
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(
                f"a document of {source.path} has no text: its {source.text_column!r} is {text!r}. Remove or fill "
                f"such rows, or choose the right text_column"
            )
    return texts


class SourceTexts:
    """A source's documents as a tokenizer trainer reads them (``gpt_scratch.tokenizer.trainer.Corpus``): the first
    ``val_docs`` held out (read when first asked for: the trainer checks its destination first), the rest in
    canonical order until either bound, counted (documents, bytes, characters that are not text) on a progress bar
    as they are read."""

    def __init__(
        self, source: TextSource, val_docs: int, max_docs: int | None = None, max_bytes: int | None = None
    ) -> None:
        self.source, self.name, self.val_docs, self.max_docs, self.max_bytes = (source, source.path, val_docs,
                                                                                  max_docs, max_bytes)  # fmt: skip
        self.documents = self.bytes = self.not_text = 0

    @functools.cached_property
    def held_out(self) -> list[str]:
        return [row["text"] for row in open_documents(self.source).take(self.val_docs)]  # an empty source fails here

    def __iter__(self) -> Iterator[str]:
        from tqdm.auto import tqdm

        with tqdm(desc=f"reading {self.source.path}", unit=" docs") as bar:
            for batch in open_documents(self.source).skip(len(self.held_out)).iter(batch_size=256):
                for text in checked_texts(batch["text"], self.source):
                    if self._full():
                        return
                    self.documents += 1
                    self.bytes += len(text.encode("utf-8", "surrogatepass"))
                    self.not_text += not_text_characters(text)
                    bar.update(1)
                    bar.set_postfix_str(f"{self.bytes / 1e6:,.1f} MB", refresh=False)
                    yield text

    def _full(self) -> bool:
        return (self.max_docs is not None and self.documents >= self.max_docs) or (
            self.max_bytes is not None and self.bytes >= self.max_bytes
        )
