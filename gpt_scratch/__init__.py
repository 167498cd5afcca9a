"""gpt-scratch: a GPT-2 written from scratch that behaves like a model shipped inside transformers.

Importing the package registers the config and models with the Auto classes, and marks them so that
``save_pretrained`` writes ``auto_map`` and copies their code: a saved directory then loads anywhere with
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``, even where this package is not installed.

Nothing heavy loads at import: the names below are imported on first use, and the registration happens as soon as
transformers' Auto classes or these models are loaded (``auto_registration``), so that every program's ``--help``
answers at once.
"""

from . import auto_registration
from .lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".configuration_gpt_scratch": ["PRESETS", "GPTScratchConfig"],
    ".modeling_gpt_scratch": ["GPTScratchForCausalLM", "GPTScratchModel", "GPTScratchPreTrainedModel"],
    ".saving": ["save_model_dir"],
    ".tokenizer": ["TextTokenizer", "gpt2_encoding", "gpt2_tokenizer", "load_tokenizer"],
})  # fmt: skip

auto_registration.install()

__all__ = [
    "PRESETS",
    "GPTScratchConfig",
    "GPTScratchForCausalLM",
    "GPTScratchModel",
    "GPTScratchPreTrainedModel",
    "TextTokenizer",
    "gpt2_encoding",
    "gpt2_tokenizer",
    "load_tokenizer",
    "save_model_dir",
]
