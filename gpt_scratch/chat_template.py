"""The chat template a fine-tuned model carries, its special tokens, and the model rows they take.

The template (Jinja, saved by transformers as ``chat_template.jinja`` beside the tokenizer, read back by
``AutoTokenizer`` in any process, without this package) renders a conversation as::

    <|endoftext|><|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>hello<|end|>

``<|endoftext|>`` opens it, as it opens every document the model was pretrained on. The assistant's content and its
``<|end|>`` sit inside ``{% generation %}`` markers, so ``apply_chat_template(..., return_assistant_tokens_mask=True)``
gives the mask transformers and TRL train with, and ``<|end|>`` is what ``generate()`` stops at (the
``generation_config``'s ``eos_token_id``, with ``<|endoftext|>``). ``add_generation_prompt`` ends the text with
``<|assistant|>``: the model continues as the assistant.

The four tokens are added to the tokenizer as special tokens (ids after its last one). A padded vocabulary (GPT-2's
50,257 rows padded to 50,304) has rows no id uses: the new ids take them and nothing is resized. Otherwise the
embedding and the head grow by the new rows. Either way the new rows start as the mean of the known ones (as
transformers' ``resize_token_embeddings`` does), an average token rather than noise or zeros.
"""

from collections.abc import Callable
from pathlib import Path

CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
END_OF_TURN = "<|end|>"

TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'user' %}<|user|>{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'assistant' %}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{% else %}{{ raise_exception('unknown role ' ~ message['role'] ~ ': the roles are system, user, assistant') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def read_template(path: str | None) -> str | None:
    """A ``chat_template:`` file's text, checked to mark the assistant's part (the loss is counted on it)."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"chat_template {path} is not a file (give a Jinja file, or leave it out)")
    text = file.read_text()
    if "{% generation %}" not in text and "{%- generation %}" not in text:
        raise ValueError(
            f"chat_template {path} has no {{% generation %}} ... {{% endgeneration %}} around the assistant's "
            "content: the loss on the answers needs it (see gpt_scratch/chat_template.py)"
        )
    return text


def with_chat_template(tokenizer, template: str | None = None):
    """``tokenizer`` (a transformers tokenizer) able to chat: this project's tokens and template, unless it has a
    template already (a model fine-tuned elsewhere keeps its own) or ``template`` (a ``chat_template:`` file's text)
    replaces it. Tokens the template uses that the tokenizer lacks are added as special tokens."""
    if template is not None or not tokenizer.chat_template:
        tokenizer.chat_template = template or TEMPLATE
    vocabulary = tokenizer.get_vocab()
    missing = [token for token in CHAT_TOKENS if token in tokenizer.chat_template and token not in vocabulary]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer


def chat_tokenizer(tokenizer, config):
    """The run's tokenizer for a chat fine-tune: the template of ``chat_template:`` (a file), else the one the
    tokenizer's directory holds (a model fine-tuned elsewhere keeps its own), else this project's."""
    template = read_template(config.chat_template)
    own = Path(config.tokenizer) / "chat_template.jinja" if config.tokenizer not in (None, "gpt2") else None
    if template is None and own is not None and own.is_file():
        template = own.read_text()
    return with_chat_template(tokenizer, template)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The ids ``generate()`` stops at: the end of a turn (when the tokenizer has ours), and ``<|endoftext|>``."""
    ids = [tokenizer.convert_tokens_to_ids(END_OF_TURN)] if END_OF_TURN in tokenizer.get_vocab() else []
    return ids + [tokenizer.eos_token_id]


def fit_model_to_tokenizer(model, tokenizer, say: Callable[[str], None]) -> None:
    """The model's vocabulary made the tokenizer's: new ids take padded rows where there are enough, else the
    embedding and head grow; either way each new row starts as the mean of the known ones. ``generate()`` stops at
    the end of a turn."""
    import torch

    config, wanted = model.config, len(tokenizer)
    rows, known = model.get_input_embeddings().weight.shape[0], config.vocab_size
    if wanted > known:
        added = ", ".join(tokenizer.convert_ids_to_tokens(list(range(known, wanted))))
        if wanted <= rows:
            say(f"chat: the new tokens {added} take padded rows {known}..{wanted - 1} of {rows}; nothing resized")
        else:
            model.resize_token_embeddings(wanted, mean_resizing=False)
            say(f"chat: the embedding and head grow from {rows} to {wanted} rows for the new tokens {added}")
            if getattr(config, "padded_vocab_size", None) is not None:
                config.padded_vocab_size = wanted
        config.vocab_size = wanted
        with torch.no_grad():  # the new tokens start as an average token (tied weights: one matrix)
            matrices = {id(m): m for m in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)}
            for matrix in matrices.values():
                matrix[known:wanted] = matrix[:known].mean(dim=0)
    model.generation_config.eos_token_id = end_of_turn_ids(tokenizer)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
