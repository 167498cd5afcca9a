"""The run's data, from its config: this process's training batches and every source's validation windows, for one
source or a mixture alike (``run_data``). What train.py reads; how it is read lives in the modules beside this one.

- One source is a mixture of one: a ``MixtureEntry`` labelled with its path, read by its own pipeline as before
  (``PackedBatches`` streaming it, or ``TokenShardBatches`` over its prepared shards), reported as one source.
- A mixture (``data: {SOURCE: WEIGHT}``, a list of entries, or ``token_shards: {DIR: WEIGHT}``) is parsed once, here,
  and read by ``MixtureBatches``; each source's validation and draw are reported apart.
- Each source holds out its first ``val_docs`` documents (its own, in a mixture entry that sets them): they are read
  now, before step 1, so a source that cannot spare them, a missing shard directory or data that is not text is said
  before any training.
- DataLoader workers (``data_workers``) read the batches off the training loop and resume exactly (``WorkerBatches``).
"""

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch

from ..conversations import Conversation
from ..tokenizer import TextTokenizer, load_tokenizer, tokenizer_exists
from ..tokenizer.choices import VAL_DOCS
from ..tokenizer.trainer import rounded_vocab_size, train_tokenizer, training_lock
from .mixture import MixtureBatches, MixtureEntry, check_shard_directories, config_mixture, describe
from .sft import ConversationBatches, Packer, batched, encode, packed_windows
from .shards import TokenShardBatches, shards_identity
from .sources import SourceTexts, TextSource, open_documents, source_format, source_is_local, validation_documents
from .stream import PackedBatches, ReadOptions, WorkerBatches, token_windows, validation_tokens


@dataclass
class RunData:
    """What a run trains and validates on."""

    train: Any  # next_batch(), state_dict(), load_state_dict(); a mixture's also `drawn` (rows per source)
    validation: dict[str, list[torch.Tensor]]  # each source's validation windows, by its label
    sources: list[MixtureEntry]  # one source, or a mixture's
    mixed: bool  # a mixture: each source is validated and counted apart
    prompts: list = field(default_factory=list)  # a chat fine-tune's held-out prompts, whose replies are its samples

    def describe(self) -> str:
        """The data in one phrase: the source, or ``a 70%, b 30%``."""
        return describe(self.sources) if self.mixed else self.sources[0].source.path

    def shards_identities(self) -> dict[str, str]:
        """Each prepared source's shard identity, by label: a resume recognises the same shards at another path and
        refuses others, for every source of a mixture too."""
        return {entry.label: shards_identity(entry.token_shards) for entry in self.sources if entry.token_shards}


def run_sources(config) -> tuple[list[MixtureEntry], bool]:
    """The run's sources (a TrainConfig's ``data`` and ``token_shards``), and whether they are a mixture."""
    if mixture := config_mixture(config):
        return mixture, True
    source = TextSource(config.data, config.data_name, config.data_split, config.text_column, config.data_format)
    shards = config.token_shards if isinstance(config.token_shards, str) else None
    return [MixtureEntry(config.data, source, 1.0, shards)], False


def own_val_docs(entry: MixtureEntry) -> str:
    """What to change when a mixture source cannot spare its held-out documents: its own val_docs (the run's would
    shrink every source's validation)."""
    return (f"give {entry.label} its own val_docs in the list form: data: [{{path: {entry.source.path}, weight: "
            f"{entry.weight:.4g}, val_docs: {{spare}}}}, ...]")  # fmt: skip


def validation_windows(config, entry: MixtureEntry, tokens: torch.Tensor, mixed: bool) -> list[torch.Tensor]:
    """One source's validation windows; in a mixture, an error naming the source."""
    try:
        return token_windows(tokens, config.seq_len, config.micro_batch_size)[: config.val_batches]
    except ValueError as error:
        if not mixed:
            raise
        raise ValueError(f"data: {entry.label}: {error}; raise val_docs or lower seq_len") from None


SAMPLED_PROMPTS = 3  # held-out prompts whose replies a chat fine-tune's evaluation writes to samples.txt


def chat_data(config) -> bool:
    """Whether the run trains on conversations (a chat fine-tune): its source, or every source of its mixture, has
    conversation rows."""
    sources, _ = run_sources(config)
    chat = [not entry.token_shards and source_format(entry.source) != "text" for entry in sources]
    if any(chat) and not all(chat):
        talk = ", ".join(entry.label for entry, is_chat in zip(sources, chat) if is_chat)
        raise ValueError(f"data: {talk} holds conversations and the other sources text; a mixture is all "
                         "conversations (a chat fine-tune) or all text")  # fmt: skip
    return all(chat)


def conversation_data(config, chat_tokenizer, rank: int, world_size: int, say: Callable[[str], None]) -> RunData:
    """A chat fine-tune's batches (``ConversationBatches``: one source or a mixture) and each source's held-out
    conversations' windows; every local row is checked now, before step 1 (a bad row is one line naming it)."""
    sources, mixed = run_sources(config)
    validation, prompts, packer = {}, [], Packer(config.seq_len, chat_tokenizer.eos_token_id)
    for entry in sources:
        source = entry.source
        documents = validation_documents(source, entry.held_out(config.val_docs), own_val_docs(entry) if mixed
                                         else None)  # fmt: skip
        if source_is_local(source):
            for _ in open_documents(source):  # each row is checked as it is read
                pass
        conversations = [Conversation.from_json(text) for text in documents]
        held_out = [encode(example, chat_tokenizer, config.loss_on, f"{source.path}, row {row + 1}")
                    for row, example in enumerate(conversations)]  # fmt: skip
        windows = batched(packed_windows(held_out, packer), config.micro_batch_size)[: config.val_batches]
        validation[entry.label] = windows
        prompts += [example.prompt() for example in conversations[:SAMPLED_PROMPTS]]
        say(f"data: {entry.label}, {source_format(source)} rows, {len(documents)} held out")
    if packer.truncated:
        say(f"data: {packer.truncated} held-out conversations are longer than seq_len + 1 ({config.seq_len + 1} "
            "tokens) and are cut there")  # fmt: skip
    if mixed:
        say(f"data: a mixture of {len(sources)} conversation sources by training tokens: {describe(sources)}")
    say(f"data: loss on {config.loss_on}, conversations packed into windows of {config.seq_len + 1} tokens")
    train = ConversationBatches(sources, chat_tokenizer, config.micro_batch_size, config.seq_len, rank, world_size,
                                config.seed, config.shuffle_buffer, config.val_docs, config.loss_on)  # fmt: skip
    return RunData(train, validation, sources, mixed, prompts[:SAMPLED_PROMPTS])


def run_data(
    config, tokenizer: TextTokenizer, rank: int, world_size: int, accumulation: int, say: Callable[[str], None]
) -> RunData:
    """This process's training batches and the validation windows of every source, from the config."""
    sources, mixed = run_sources(config)
    check_shard_directories(sources)
    held_out = {entry.label: validation_tokens(entry.source, entry.held_out(config.val_docs), tokenizer,
                                               own_val_docs(entry) if mixed else None, say)
                for entry in sources}  # fmt: skip
    validation = {entry.label: validation_windows(config, entry, held_out[entry.label], mixed) for entry in sources}
    options = ReadOptions(config.micro_batch_size, config.seq_len, rank, world_size, config.seed,
                          config.shuffle_buffer, config.val_docs, config.window_shuffle, tokenizer)  # fmt: skip
    if mixed:
        say(f"data: a mixture of {len(sources)} sources by training tokens: {describe(sources)}")
        skips = [len(tokens) for tokens in held_out.values()]
        train = read_by_workers(config, MixtureBatches(sources, options, skip_tokens=skips), accumulation)
    elif sources[0].token_shards:
        # The first val_docs documents open shard 0 (shards keep the source's order): start training after them.
        (entry,) = sources
        train = TokenShardBatches(entry.token_shards, start_token=len(held_out[entry.label]), source=entry.source,
                                  **options.shards())  # fmt: skip
    else:
        train = read_by_workers(config, PackedBatches(sources[0].source, **options.stream()), accumulation)
    return RunData(train, validation, sources, mixed)


def read_by_workers(config, dataset, accumulation: int):
    """``dataset`` read in ``data_workers`` DataLoader worker processes, off the training loop (they tokenize there)
    and resuming exactly; ``dataset`` itself when there are none."""
    if not config.data_workers:
        return dataset
    # Snapshots at checkpoint steps make a resume replay nothing; the cap bounds the replay after a SIGTERM.
    return WorkerBatches(
        dataset, config.data_workers, snapshot_every=min(config.checkpoint_interval * accumulation, 256)
    )


def prepare_tokenizer(config, accelerator) -> None:
    """Train the tokenizer directory a run's config (a TrainConfig) names when ``tokenizer_vocab_size`` is set and it
    does not exist yet, on the run's own data (or ``tokenizer_data``): the main process trains it (as ``python -m
    gpt_scratch.tokenizer train`` would) while the others wait. Here, with the run's data, because it reads a
    source: the trainer itself (``gpt_scratch.tokenizer.trainer``) only reads text it is given."""
    if config.tokenizer_vocab_size is None:
        return
    with accelerator.main_process_first(), ExitStack() as held:  # the same barrier on every process
        if not accelerator.is_main_process:
            return
        held.enter_context(training_lock(config.tokenizer, accelerator.print))  # another run may be training it
        if tokenizer_exists(config.tokenizer):
            size = load_tokenizer(config.tokenizer).vocab_size
            if size != rounded_vocab_size(config.tokenizer_vocab_size):
                accelerator.print(
                    f"tokenizer: {config.tokenizer} exists ({size:,} tokens) and is used as it is; "
                    f"tokenizer_vocab_size ({config.tokenizer_vocab_size}) applies to training a missing one"
                )
            return
        if config.tokenizer_data is None:  # the run's own data, read as the run reads it
            source = TextSource(config.data, config.data_name, config.data_split, config.text_column)
        else:
            source = TextSource(config.tokenizer_data)
        accelerator.print(f"tokenizer: {config.tokenizer} does not exist yet; training it on {source.path}")
        # At least the run's validation documents held out, and the CLI's default: the same tokenizer it makes.
        summary = train_tokenizer(SourceTexts(source, max(config.val_docs, VAL_DOCS)), config.tokenizer_vocab_size,
                                  config.tokenizer)  # fmt: skip
        accelerator.print(summary.line(config.tokenizer))
