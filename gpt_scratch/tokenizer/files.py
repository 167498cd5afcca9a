"""A tokenizer written to a directory so that every transformers version and GPT-2 tool loads it with the same ids."""

import json
import os
import re
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from .text_tokenizer import uses_gpt2_split


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike) -> Path:
    """Save the tokenizer so that every transformers version and GPT-2 tool loads it with the same ids.

    ``tokenizer_config.json`` names a class that transformers 4.x knows too (5's default name, ``TokenizersBackend``,
    is unknown to 4.x, which vLLM and GPT-2 tools pin). A tokenizer that splits text as GPT-2 does is saved as
    GPT-2's own class, with GPT-2's classic ``vocab.json`` + ``merges.txt`` beside ``tokenizer.json`` for converters
    that read those (llama.cpp, CTranslate2); any other (a trained one) as ``PreTrainedTokenizerFast``, which reads
    tokenizer.json as it is (transformers 5's ``GPT2Tokenizer`` would impose GPT-2's split on it).
    """
    out_dir = Path(out_dir)
    try:
        tokenizer.save_pretrained(out_dir)
    except Exception as error:  # the tokenizers library reports an OS error as a plain Exception: "... (os error 28)"
        if (code := re.search(r"\(os error (\d+)\)", str(error))) is None:
            raise
        raise OSError(int(code.group(1)), str(error)) from None
    tokenizer_config = json.loads((out_dir / "tokenizer_config.json").read_text())
    gpt2_split = uses_gpt2_split(tokenizer)
    tokenizer_config["tokenizer_class"] = "GPT2Tokenizer" if gpt2_split else "PreTrainedTokenizerFast"
    # What the model takes: 4.x's PreTrainedTokenizerFast would also return token_type_ids, which generate refuses.
    tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    if not gpt2_split:
        return out_dir
    definition = json.loads((out_dir / "tokenizer.json").read_text())
    vocab = dict(definition["model"]["vocab"])
    vocab.update({added["content"]: added["id"] for added in definition["added_tokens"]})
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in definition["model"]["merges"]]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return out_dir
