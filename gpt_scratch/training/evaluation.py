"""What an evaluation during training measures: validation loss and bits per byte (of each source of a mixture,
and of the mixed text), and a few sampled continuations."""

import math

import torch
from accelerate import Accelerator

from ..train_config import TrainConfig
from .step import document_positions


@torch.no_grad()
def validation_totals(
    model, batches: list[torch.Tensor], accelerator: Accelerator, eot_token_id: int | None, lengths: torch.Tensor | None
) -> torch.Tensor:
    """(summed nats, targets, bytes the targets spell) over the fixed validation windows, each process taking every
    N-th batch (attention masked by document exactly as in training), summed over processes. A batch is (B, T + 1)
    tokens, or packed conversations' (inputs, targets, positions), whose targets count only the answers."""
    model.eval()
    totals = torch.zeros(3, device=accelerator.device)
    for batch in batches[accelerator.process_index :: accelerator.num_processes]:
        if isinstance(batch, torch.Tensor):
            inputs, targets = batch[:, :-1].to(accelerator.device), batch[:, 1:].to(accelerator.device)
            positions = document_positions(inputs, eot_token_id)
        else:
            inputs, targets, position_ids = (part.to(accelerator.device) for part in batch)
            positions = {"position_ids": position_ids}
        with accelerator.autocast():
            loss = model(input_ids=inputs, shift_labels=targets, use_cache=False, **positions).loss
        counted = targets != -100
        count = counted.sum().float()
        spelled = lengths[targets[counted]].sum().float() if lengths is not None else torch.zeros_like(count)
        totals += torch.stack([loss.float() * count, count, spelled])
    model.train()
    return accelerator.reduce(totals, reduction="sum")


def validation_metrics(
    model,
    batches: list[torch.Tensor],
    accelerator: Accelerator,
    eot_token_id: int | None,
    token_bytes: torch.Tensor | None = None,
) -> dict[str, float]:
    """``val_loss``: mean next-token loss (nats) over the fixed validation windows; with ``token_bytes`` (each id's
    length in bytes), ``val_bpb``: bits per byte, the summed nats / ln 2 / the UTF-8 bytes of the text the targets
    spell. Loss per token cannot compare two tokenizers (a token of one is not a token of the other); bits per byte
    can."""
    lengths = token_bytes.to(accelerator.device) if token_bytes is not None else None
    nats, targets, spelled = validation_totals(model, batches, accelerator, eot_token_id, lengths).tolist()
    return {"val_loss": nats / targets, **({"val_bpb": nats / math.log(2) / spelled} if lengths is not None else {})}


def mixture_validation_metrics(
    model,
    batches: dict[str, list[torch.Tensor]],
    weights: dict[str, float],
    accelerator: Accelerator,
    eot_token_id: int | None,
    token_bytes: torch.Tensor | None = None,
) -> dict:
    """``validation_metrics`` of each source's held-out windows (``sources``: label -> its val_loss and val_bpb), and
    the mixed text's, whose tokens are drawn from the sources by their weights: ``val_loss`` the tokens' weighted
    mean loss, ``val_bpb`` the weighted nats over the weighted bytes (not a mean of the sources' ratios: a source of
    long tokens weighs more bytes)."""
    lengths = token_bytes.to(accelerator.device) if token_bytes is not None else None
    totals = {label: validation_totals(model, windows, accelerator, eot_token_id, lengths).tolist()
              for label, windows in batches.items()}  # fmt: skip
    sources = {}
    for label, (nats, targets, spelled) in totals.items():
        sources[label] = {"val_loss": nats / targets}
        if lengths is not None:
            sources[label]["val_bpb"] = nats / math.log(2) / spelled
    mixture = {"val_loss": sum(weights[label] * figures["val_loss"] for label, figures in sources.items())}
    if lengths is not None:  # per token drawn: weighted nats, and weighted bytes
        bytes_per_token = sum(weights[label] * spelled / targets for label, (_, targets, spelled) in totals.items())
        mixture["val_bpb"] = mixture["val_loss"] / math.log(2) / bytes_per_token
    return {**mixture, "sources": sources}


def run_validation(model, data, accelerator: Accelerator, eot_token_id: int | None, token_bytes: torch.Tensor,
                   seq_len: int) -> dict:  # fmt: skip
    """The validation of a run's data (``gpt_scratch.data.RunData``): its one source's loss and bits per byte; of a
    mixture, each source's (``sources``) with the mixed text's, and the training tokens drawn from each source so
    far, over every process (``drawn``)."""
    if not data.mixed:
        (windows,) = data.validation.values()
        return validation_metrics(model, windows, accelerator, eot_token_id, token_bytes)
    weights = {entry.label: entry.weight for entry in data.sources}
    results = mixture_validation_metrics(model, data.validation, weights, accelerator, eot_token_id, token_bytes)
    if hasattr(data.train, "drawn_tokens"):  # conversations: one global order, every process counts them all
        results["drawn"] = data.train.drawn_tokens()
        return results
    rows = accelerator.reduce(data.train.drawn.to(accelerator.device).clone(), reduction="sum")
    results["drawn"] = {entry.label: int(count) * seq_len for entry, count in zip(data.sources, rows.tolist())}
    return results


def validation_loss(model, batches: list[torch.Tensor], accelerator: Accelerator, eot_token_id: int | None) -> float:
    """Mean next-token loss over the fixed validation windows (``validation_metrics``' ``val_loss``)."""
    return validation_metrics(model, batches, accelerator, eot_token_id)["val_loss"]


@torch.no_grad()
def generate_samples(model, tokenizer, config: TrainConfig, device: torch.device) -> list[str]:
    """A few sampled continuations of the configured prompts. Call it on every process: under FSDP each forward
    gathers weights from all of them."""
    model.eval()
    batch = tokenizer(config.sample_prompts, return_tensors="pt", padding=True).to(device)
    # Fixed seed, so samples compare across evals, in a forked RNG, so sampling never moves the training RNG (a
    # resumed run must draw exactly what the uninterrupted one would).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        out = model.generate(**batch, max_new_tokens=config.sample_tokens, do_sample=True, top_k=50,
                             temperature=config.sample_temperature)  # fmt: skip
    model.train()
    return tokenizer.batch_decode(out, skip_special_tokens=True)


@torch.no_grad()
def chat_samples(model, tokenizer, prompts: list, config: TrainConfig, device: torch.device) -> list[str]:
    """The model's replies to held-out prompts (messages rendered through the chat template with the assistant's
    opening, or a prompt string), each until its end of turn, as ``prompt -> reply`` text. Call it on every
    process (FSDP)."""
    model.eval()
    replies = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for prompt in prompts:
            if isinstance(prompt, str):
                ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
                shown = prompt
            else:
                ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)["input_ids"]  # fmt: skip
                shown = f"{prompt[-1]['role']}: {prompt[-1]['content']}"  # the turn it answers
            ids = ids[:, -model.config.n_positions + config.sample_tokens :].to(device)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=config.sample_tokens,
                                 do_sample=True, top_k=50, temperature=config.sample_temperature)  # fmt: skip
            reply = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            replies.append(f"{shown}\n-> {reply}")
    model.train()
    return replies
