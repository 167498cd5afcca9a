"""Text sources -> shuffled documents -> GPT-2 tokens -> packed (B, T) batches, split across processes, resumable.

- ``sources``: where documents come from (``TextSource``, ``open_documents``, the fixed validation documents);
- ``stream``: streaming documents, shuffled and packed into batches with exact resume (``PackedBatches``);
- ``shards``: tokenize once into memory-mapped uint16 shards with a manifest, read them back (``TokenShardBatches``).
"""

from ..lazy import lazy_exports

# imported on first use: ``python -m gpt_scratch.data --help`` answers before torch loads
__getattr__, __dir__ = lazy_exports(__name__, {
    ".shards": ["TokenShardBatches", "check_fits_uint16", "prepare_shards"],
    ".sources": ["FINEWEB_EDU", "PYTHON_STDLIB", "TextSource", "open_documents", "validation_documents"],
    ".stream": ["DocumentStream", "PackedBatches", "WorkerBatches", "token_windows", "tokenize_documents",
                "validation_batches", "validation_tokens"],
})  # fmt: skip

__all__ = __dir__()
