"""gpt-scratch: a GPT-2 written from scratch that behaves like a model shipped inside transformers.

Importing the package registers the config and models with the Auto classes, and marks them so that
``save_pretrained`` writes ``auto_map`` and copies their code: a saved directory then loads anywhere with
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``, even where this package is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_gpt_scratch import PRESETS, GPTScratchConfig
from .modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchModel, GPTScratchPreTrainedModel
from .saving import save_model_dir
from .tokenizer import TextTokenizer, gpt2_encoding, gpt2_tokenizer, load_tokenizer

AutoConfig.register(GPTScratchConfig.model_type, GPTScratchConfig, exist_ok=True)
AutoModel.register(GPTScratchConfig, GPTScratchModel, exist_ok=True)
AutoModelForCausalLM.register(GPTScratchConfig, GPTScratchForCausalLM, exist_ok=True)
GPTScratchConfig.register_for_auto_class()
GPTScratchModel.register_for_auto_class("AutoModel")
GPTScratchForCausalLM.register_for_auto_class("AutoModelForCausalLM")

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
