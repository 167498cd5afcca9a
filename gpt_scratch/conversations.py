"""Conversation data: the row formats a chat fine-tune reads, recognised from their columns, checked, and brought to
one form, a list of messages and how many of them are the prompt.

- ``messages``: TRL's and the Hub's conversational rows, ``{"messages": [{"role": "system" | "user" | "assistant",
  "content": "..."}, ...]}``, multi-turn, a system message optional; the loss counts every assistant turn;
- ``prompt_completion``: ``{"prompt": ..., "completion": ...}``, each a list of messages (rendered by the chat
  template; the loss counts the completion) or each a string (TRL's language-modelling form: the text as it is,
  the completion followed by ``<|endoftext|>``; the loss counts the completion);
- ``instruction``: Alpaca's ``{"instruction", "input", "output"}``, as litgpt reads it: a user turn (the instruction,
  and the input after a blank line when there is one) and an assistant turn (the output).

Nothing here imports torch or a tokenizer: the checks run on the rows before anything is trained.
"""

import json
from dataclasses import dataclass
from typing import Any

FORMATS = ("text", "messages", "prompt_completion", "instruction")
ROLES = ("system", "user", "assistant")
COLUMNS = {"messages": ("messages",), "prompt_completion": ("prompt", "completion"),
           "instruction": ("instruction", "output")}  # fmt: skip


def recognised_format(columns: list[str], text_column: str = "text") -> str | None:
    """The format the columns say, or None: a ``text`` column (or ``text_column``) is plain text, as before."""
    if text_column in columns:
        return "text"
    return next((name for name, needed in COLUMNS.items() if set(needed) <= set(columns)), None)


def data_columns(data_format: str, text_column: str = "text") -> list[str]:
    """The columns a format reads (``input`` of instruction rows is optional)."""
    if data_format == "text":
        return [text_column]
    return [*COLUMNS[data_format], *(["input"] if data_format == "instruction" else [])]


@dataclass(frozen=True)
class Conversation:
    """One example: its messages, and how many of them open it as the prompt (the loss counts what follows); or,
    for a prompt-completion row of strings, the two strings (``text``: prompt, completion)."""

    messages: tuple[dict[str, str], ...] = ()
    prompt_messages: int | None = None  # prompt-completion of messages: the first N are the prompt
    text: tuple[str, str] | None = None  # prompt-completion of strings

    def prompt(self) -> list[dict[str, str]] | str:
        """What the model answers: the messages before the first assistant turn (or the prompt messages), or the
        prompt string."""
        if self.text is not None:
            return self.text[0]
        if self.prompt_messages is not None:
            return list(self.messages[: self.prompt_messages])
        first_answer = next(i for i, message in enumerate(self.messages) if message["role"] == "assistant")
        return list(self.messages[:first_answer])

    def to_json(self) -> str:
        return json.dumps({"messages": list(self.messages), "prompt_messages": self.prompt_messages,
                           "text": self.text}, ensure_ascii=False)  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> "Conversation":
        row = json.loads(text)
        return cls(tuple(row["messages"]), row["prompt_messages"], tuple(row["text"]) if row["text"] else None)


class BadRow(ValueError):
    """A row that cannot be trained on: the message names the source, the row and the fix."""


def _messages(value: Any, where: str, field: str) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise BadRow(f"{where}: {field} must be a non-empty list of {{role, content}} messages, got {_short(value)}")
    out = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise BadRow(f"{where}: {field}[{index}] must be a {{role, content}} message, got {_short(message)}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise BadRow(f"{where}: {field}[{index}] has the role {role!r}; the roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise BadRow(f"{where}: {field}[{index}]'s content must be a string, got {_short(content)} (a list of "
                         "parts, as multimodal rows have, is not text: join its text parts)")  # fmt: skip
        out.append({"role": role, "content": content})
    return tuple(out)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def conversation(row: dict[str, Any], data_format: str, where: str) -> Conversation:
    """One row in the common form, or a BadRow naming ``where`` (the source and the row) and what to fix."""
    if data_format == "messages":
        messages = _messages(row.get("messages"), where, "messages")
        if not any(message["role"] == "assistant" for message in messages):
            raise BadRow(f"{where}: the conversation has no assistant turn, so nothing to learn from; give each "
                         "conversation at least one assistant message, or drop the row")  # fmt: skip
        return Conversation(messages)
    if data_format == "prompt_completion":
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(prompt, str) and isinstance(completion, str):
            if not completion:
                raise BadRow(f"{where}: the completion is empty, so nothing to learn from")
            return Conversation(text=(prompt, completion))
        if isinstance(prompt, str) or isinstance(completion, str):
            raise BadRow(f"{where}: prompt and completion must both be strings or both lists of messages, got "
                         f"{type(prompt).__name__} and {type(completion).__name__}")  # fmt: skip
        prompt_turns = _messages(prompt, where, "prompt")
        completion_turns = _messages(completion, where, "completion")
        if not any(message["role"] == "assistant" for message in completion_turns):
            raise BadRow(f"{where}: the completion has no assistant message, so nothing to learn from")
        return Conversation(prompt_turns + completion_turns, prompt_messages=len(prompt_turns))
    if data_format == "instruction":
        instruction, extra, output = row.get("instruction"), row.get("input") or "", row.get("output")
        for name, value in (("instruction", instruction), ("input", extra), ("output", output)):
            if not isinstance(value, str):
                raise BadRow(f"{where}: {name} must be a string, got {_short(value)}")
        if not output:
            raise BadRow(f"{where}: the output is empty, so nothing to learn from")
        user = instruction + ("\n\n" + extra if extra else "")
        return Conversation(({"role": "user", "content": user}, {"role": "assistant", "content": output}))
    raise ValueError(f"unknown data format {data_format!r}; the formats are {', '.join(FORMATS)}")
