"""Text sources -> shuffled documents -> GPT-2 tokens -> packed (B, T) batches, split across processes, resumable.

- ``sources``: where documents come from (``TextSource``, ``open_documents``, the fixed validation documents);
- ``stream``: streaming documents, shuffled and packed into batches with exact resume (``PackedBatches``);
- ``shards``: tokenize once into memory-mapped uint16 shards with a manifest, read them back (``TokenShardBatches``).
"""

from .shards import TokenShardBatches, check_fits_uint16, prepare_shards
from .sources import FINEWEB_EDU, PYTHON_STDLIB, TextSource, open_documents, validation_documents
from .stream import (
    DocumentStream,
    PackedBatches,
    WorkerBatches,
    token_windows,
    tokenize_documents,
    validation_batches,
    validation_tokens,
)

__all__ = [
    "FINEWEB_EDU",
    "PYTHON_STDLIB",
    "DocumentStream",
    "PackedBatches",
    "TextSource",
    "TokenShardBatches",
    "WorkerBatches",
    "check_fits_uint16",
    "open_documents",
    "prepare_shards",
    "token_windows",
    "tokenize_documents",
    "validation_batches",
    "validation_documents",
    "validation_tokens",
]
