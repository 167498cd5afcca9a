"""TrainConfig: every knob of train.py in one typed dataclass, loaded from a YAML preset and command-line overrides.

    python train.py configs/quickstart.yaml --lr 3e-4 --max_steps 200 --sample_prompts '["Once upon"]'

Values on the command line are read as YAML (so ``3e-4``, ``true``, ``null`` and ``[a, b]`` work) and checked
against the field's type; unknown keys and bad values are errors that say what to change.
"""

import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# TrainConfig fields passed to GPTScratchConfig under the same name when set (null: the preset's value).
MODEL_OPTIONS = ("n_layer", "n_head", "n_embd", "padded_vocab_size", "position_embedding_type", "rope_theta",
                 "norm_type", "qk_norm", "activation_function", "final_logit_softcapping", "tie_word_embeddings",
                 "bias", "zero_init_residual")  # fmt: skip


@dataclass
class TrainConfig:
    # --- run ---
    # Checkpoints, logs, loss curve and the exported model go here. The default is a run without a config's own
    # directory: never a preset's (runs/quickstart is the quickstart's, whose model the docs use).
    run_dir: str = "runs/defaults"
    seed: int = 1337
    # --- model: a GPTScratchConfig preset, with optional overrides; or a pretrained model to start from ---
    # A pretrained model's weights to start from (gpt_scratch.init_from): gpt2 ... gpt2-xl or a Hub id, a model
    # directory (GPT-2's format or an export), a nanoGPT .pt, or a checkpoint of this project. Its architecture and
    # tokenizer are the run's (the preset and model options below must not contradict them); null: random weights.
    init_from: str | None = None
    model: str = "tiny"  # gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny (2 layers x 64), mini (4 layers x 128)
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    padded_vocab_size: int | None = None  # e.g. 50304: embedding/head rows a multiple of 128, faster matmuls
    dropout: float = 0.0
    # The modern recipe's model options, as GPTScratchConfig names them; null keeps the preset's (GPT-2's) choice.
    position_embedding_type: str | None = None  # absolute (GPT-2's learned table) or rope (rotary)
    rope_theta: float | None = None  # rotary base frequency (10000)
    norm_type: str | None = None  # layernorm or rmsnorm
    qk_norm: bool | None = None  # RMSNorm of each head's queries and keys
    activation_function: str | None = None  # gelu_new (GPT-2), relu2, ...
    final_logit_softcapping: float | None = None  # cap * tanh(logits / cap), e.g. 15
    tie_word_embeddings: bool | None = None  # false: the head is its own matrix
    bias: bool | None = None  # false: no biases in Linear and LayerNorm
    zero_init_residual: bool | None = None  # output projections (and an untied head) start at zero
    # --- tokenizer: gpt2, or a directory from `python -m gpt_scratch.tokenizer train` (the model's vocab follows) ---
    tokenizer: str | None = None  # null: GPT-2's, or init_from's own
    # Set to train the directory `tokenizer` names first, when it does not exist yet: a byte-level BPE of this many
    # tokens (rounded up to a multiple of 128) on `tokenizer_data`. An existing directory is used as it is, whatever
    # its size, and never overwritten (a resume with another tokenizer at the same path is refused by name).
    tokenizer_vocab_size: int | None = None
    tokenizer_data: str | None = None  # null: the run's own data (with data_name, data_split, text_column)
    # --- data (see gpt_scratch.data) ---
    # fineweb-edu, python-stdlib, a Hub id, or local files; or a mixture, each source's share of the training tokens
    # set by its weight: {fineweb-edu: 0.7, "code/**/*.py": 0.3}, or a list of {path, weight, name, split,
    # text_column, token_shards, label} (docs/data.md, Mixtures)
    data: str | dict | list = "python-stdlib"
    data_name: str | None = None  # Hub config, e.g. sample-10BT
    data_split: str = "train"
    text_column: str = "text"
    # Rows of a chat fine-tune (docs/training.md, Chat): messages, prompt_completion or instruction; text is plain
    # text; null: recognised from the columns (messages; prompt and completion; instruction and output; else text)
    data_format: str | None = None
    loss_on: str = "answers"  # conversations: the loss counts the answers (or the completion); all: every token
    chat_template: str | None = None  # a Jinja file with {% generation %} markers; null: the model's own, else ours
    # A directory from `python -m gpt_scratch.data prepare` (read instead of data), or a mixture of them by weight:
    # {shards/fineweb: 0.7, shards/code: 0.3} (each validated on the source its manifest names)
    token_shards: str | dict | None = None
    val_docs: int = 200  # the first documents of `data`, held out for validation
    shuffle_buffer: int = 1000  # documents
    window_shuffle: int = 0  # T+1-token windows held and drawn at random: mixes long documents into the rest (0: off)
    data_workers: int = 0  # DataLoader worker processes that read and tokenize the stream (0: in the loop)
    document_mask: bool = False  # attend only within each packed document (<|endoftext|> starts one)
    # --- batch: tokens_per_step = micro_batch_size * seq_len * processes * gradient accumulation steps ---
    seq_len: int = 256
    micro_batch_size: int = 8
    tokens_per_step: int = 4096
    # --- optimisation: linear warmup, then cosine (or constant, then linear: wsd) decay to min_lr ---
    max_steps: int = 300
    optimizer: str = "adamw"  # adamw, or muon: Muon on the blocks' matrices, AdamW on embeddings, head and gains
    lr: float = 1e-3  # AdamW's (gains and biases; embeddings, head and matrices unless set below)
    embedding_lr: float | None = None  # AdamW on the token (and position) embeddings; null: lr
    head_lr: float | None = None  # AdamW on an untied head; null: lr
    matrix_lr: float | None = None  # the blocks' 2-D matrices; null: lr with adamw, MUON_LR (0.02) with muon
    muon_momentum: float = 0.95  # Muon's (Nesterov) momentum
    min_lr: float = 1e-4  # the schedule ends at min_lr / lr of every group's learning rate
    lr_schedule: str = "cosine"  # cosine, or wsd (warmup-stable-decay: constant, then linear over decay_fraction)
    decay_fraction: float = 0.2  # wsd: the last fraction of max_steps that decays linearly to min_lr
    warmup_steps: int = 30
    weight_decay: float = 0.1  # on 2-D weights only (matmuls and embeddings), as GPT-2 / nanoGPT do
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # no, bf16, fp16
    compile: bool = False
    # The LM head and its loss a chunk of positions at a time (gpt_scratch.training.head_loss): same loss and gradients,
    # without the (tokens x vocabulary) logits, a step's largest tensors, ever existing whole.
    chunked_head_loss: bool = True
    fp8: bool = False  # the blocks' linear layers in FP8 (torchao; GPUs with compute capability 8.9+: H100, H200, L4)
    fp8_head: bool = False  # the head too (it then runs whole: chunked_head_loss does not apply)
    # --- evaluation and logging ---
    log_interval: int = 10
    eval_interval: int = 100
    val_batches: int = 20
    hellaswag_data: str | None = "data/hellaswag_sample.jsonl"  # or Rowan/hellaswag; null to skip
    hellaswag_limit: int | None = 200
    # Benchmark tasks scored at every evaluation, as lm-eval scores them (gpt_scratch.tasks): names or groups, e.g.
    # [arc_easy, piqa] or [small_model_suite]; hellaswag_data above adds HellaSwag to them.
    eval_tasks: list[str] = field(default_factory=list)
    eval_task_data: dict[str, str] = field(default_factory=dict)  # task -> local file or directory (default: Hub)
    eval_task_limit: int | None = 200  # the first N items of each task (null: all)
    eval_num_fewshot: int = 0
    sample_prompts: list[str] = field(default_factory=lambda: ["The meaning of life is", "def fibonacci(n):"])
    sample_tokens: int = 32
    sample_temperature: float = 1.0  # below 1: likelier tokens (samples of a small model stay on track longer)
    report_to: str = "none"  # none, tensorboard, wandb, trackio, all
    # --- checkpoints and export ---
    checkpoint_interval: int = 100
    keep_checkpoints: int = 2
    resume: str | None = None  # "auto" (newest complete checkpoint in run_dir), or a checkpoint directory
    export_dir: str | None = None  # default: run_dir/model
    push_to_hub: str | None = None  # a Hub repo id to publish the exported model to
    # Export the weights of the evaluation with the lowest validation loss instead of the last step's (a small
    # fine-tuning corpus overfits): kept in run_dir/best whenever an evaluation improves on it.
    export_best: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for option in dataclasses.fields(self):  # nan passes every comparison below (`nan <= 0` is False)
            value = getattr(self, option.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{option.name} ({value}) must be a finite number")
        if not self.run_dir.strip():  # "" would train (and export) into the working directory
            raise ValueError("run_dir is empty; name a directory for the run, e.g. runs/my-run")
        if self.tokenizer is not None and not self.tokenizer.strip():
            raise ValueError(
                "tokenizer is empty; use tokenizer: gpt2, or a tokenizer directory (e.g. runs/tokenizer-8k)"
            )
        positive = ("seq_len", "micro_batch_size", "tokens_per_step", "max_steps", "log_interval", "eval_interval",
                    "val_batches", "sample_tokens", "sample_temperature", "checkpoint_interval", "keep_checkpoints",
                    "shuffle_buffer", "val_docs")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"{name} ({value}) must be positive")
        self._validate_eval_tasks()
        for name in ("warmup_steps", "weight_decay", "grad_clip", "data_workers", "window_shuffle"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must not be negative")
        if self.token_shards and self.window_shuffle:
            raise ValueError(
                f"window_shuffle ({self.window_shuffle}) shuffles streamed data; token_shards are read in one global "
                "order (the same for any process count). Set window_shuffle: 0, or stream the data"
            )
        if self.lr <= 0:
            raise ValueError(f"lr ({self.lr}) must be positive, e.g. 6e-4")
        for name in ("embedding_lr", "head_lr", "matrix_lr"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must be positive, or null for lr ({self.lr})")
        if not 0 <= self.muon_momentum < 1:
            raise ValueError(f"muon_momentum ({self.muon_momentum}) must be in [0, 1), e.g. 0.95")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction ({self.decay_fraction}) must be in (0, 1], e.g. 0.2 (the last 20%)")
        if self.lr_schedule == "wsd" and self.warmup_steps + self.decay_steps > self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) and the decay (decay_fraction {self.decay_fraction} of max_steps "
                f"{self.max_steps} = {self.decay_steps} steps) overlap; lower warmup_steps or decay_fraction"
            )
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be between 0 and lr ({self.lr})")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must not exceed max_steps ({self.max_steps})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)}) must be in [0, 1)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout ({self.dropout}) must be in [0, 1)")
        choices = {"mixed_precision": ("no", "bf16", "fp16"), "optimizer": ("adamw", "muon"),
                   "loss_on": ("answers", "all"),
                   "lr_schedule": ("cosine", "wsd"),
                   "report_to": ("none", "tensorboard", "wandb", "trackio", "all")}  # fmt: skip
        if self.data_format is not None:
            choices["data_format"] = ("text", "messages", "prompt_completion", "instruction")
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be one of {', '.join(allowed)}")
        if self.fp8_head and not self.fp8:
            raise ValueError("fp8_head (true) puts the head in FP8 beside the blocks; set fp8: true as well")
        if self.tokenizer_vocab_size is not None and self.tokenizer in (None, "gpt2"):
            raise ValueError(
                f"tokenizer_vocab_size ({self.tokenizer_vocab_size}) trains the tokenizer directory `tokenizer` "
                "names, but tokenizer is gpt2; set tokenizer: DIR (e.g. runs/tokenizer-8k), or tokenizer_vocab_size: "
                "null"
            )
        if isinstance(self.data, (dict, list)) or isinstance(self.token_shards, dict):
            from .data.mixture import mixture_entries  # datasets and torch: only for a mixture

            mixture_entries(self.data, self.token_shards, self.data_name, self.data_split, self.text_column,
                            self.data_format)  # fmt: skip
            if self.tokenizer_vocab_size is not None and self.tokenizer_data is None:
                raise ValueError(
                    "tokenizer_vocab_size trains a tokenizer on one source, and data is a mixture; set tokenizer_data "
                    "to the text to train it on (e.g. the mixture's largest source)"
                )
        if self.init_from is not None and not self.init_from.strip():
            raise ValueError("init_from is empty; name a pretrained model (gpt2, a directory, a checkpoint) or null")
        if self.init_from is None:  # a pretrained start's architecture is checked against its source (init_from)
            self.model_config()  # the model options are checked now, before anything runs

    def _validate_eval_tasks(self) -> None:
        from .tasks.core import core_names
        from .tasks.definitions import TASKS, resolve_task_names  # the task table only: no model, no data

        _, others = core_names(list(self.eval_tasks))  # core and core:LABEL: the CORE tasks
        if others:
            resolve_task_names(others)  # an unknown name lists the known ones
        unknown = sorted(set(self.eval_task_data) - set(TASKS) - {"core"})
        if unknown:
            raise ValueError(f"eval_task_data names unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
        if self.eval_num_fewshot < 0:
            raise ValueError(f"eval_num_fewshot ({self.eval_num_fewshot}) must not be negative")
        for name in ("eval_task_limit", "hellaswag_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must be positive, or null for every item")

    @property
    def matrix_learning_rate(self) -> float:
        """The blocks' matrices' peak learning rate: ``matrix_lr``, else Muon's own scale under Muon (about 10x
        AdamW's: orthogonalised updates have unit spectral norm), else ``lr``."""
        if self.matrix_lr is not None:
            return self.matrix_lr
        return MUON_LR if self.optimizer == "muon" else self.lr

    @property
    def decay_steps(self) -> int:
        """Steps of the wsd schedule's final linear decay."""
        return round(self.decay_fraction * self.max_steps)

    def fit_micro_batch(self, num_processes: int) -> str | None:
        """Lower micro_batch_size, if needed, to the largest that splits tokens_per_step evenly over the processes.

        tokens_per_step is what the run learns from; micro_batch_size only bounds memory. A preset written for one
        process (16 x 128 = 2048 tokens) then runs as printed on 2 (8 x 128 each) with the same batch. Returns the
        note to print, or None when nothing changed.
        """
        rows = self.tokens_per_step / (self.seq_len * num_processes)  # rows of seq_len per process and step
        if rows % self.micro_batch_size == 0 or rows % 1:
            return None  # fits, or cannot fit: gradient_accumulation_steps says what to change
        fitted = max(size for size in range(1, self.micro_batch_size + 1) if int(rows) % size == 0)
        note = (f"micro_batch_size {self.micro_batch_size} -> {fitted}, so that {num_processes} processes make "
                f"tokens_per_step {self.tokens_per_step} ({fitted} x {self.seq_len} x {num_processes} x "
                f"{int(rows) // fitted} accumulation)")  # fmt: skip
        self.micro_batch_size = fitted
        return note

    def gradient_accumulation_steps(self, num_processes: int) -> int:
        """tokens_per_step / (micro_batch_size * seq_len * num_processes), which must be a whole number."""
        per_micro_step = self.micro_batch_size * self.seq_len * num_processes
        if self.tokens_per_step % per_micro_step:
            per_row = self.seq_len * num_processes
            nearest = max(1, round(self.tokens_per_step / per_row)) * per_row
            raise ValueError(
                f"tokens_per_step ({self.tokens_per_step}) is not divisible by micro_batch_size * seq_len * processes "
                f"({self.micro_batch_size} * {self.seq_len} * {num_processes} = {per_micro_step}); make it a multiple "
                f"of seq_len * processes ({per_row}), e.g. --tokens_per_step {nearest}"
            )
        return self.tokens_per_step // per_micro_step

    def model_config(self):
        """The GPTScratchConfig this run trains: the preset, its overrides, the dropout, and the tokenizer's
        vocabulary and ``<|endoftext|>`` id (a missing or unusable tokenizer directory fails here, before anything
        runs)."""
        from .configuration_gpt_scratch import GPTScratchConfig

        overrides = {k: getattr(self, k) for k in MODEL_OPTIONS if getattr(self, k) is not None}
        dropout = {"resid_pdrop": self.dropout, "embd_pdrop": self.dropout, "attn_pdrop": self.dropout}
        vocab_size, eot_id = self.tokenizer_vocabulary()
        special = {f"{role}_token_id": eot_id for role in ("bos", "eos", "pad")}
        config = GPTScratchConfig.from_preset(self.model, **overrides, **dropout, vocab_size=vocab_size, **special)
        if self.seq_len > config.n_positions:
            raise ValueError(
                f"seq_len ({self.seq_len}) exceeds the model's n_positions ({config.n_positions}); lower it"
            )
        return config

    def tokenizer_vocabulary(self) -> tuple[int, int]:
        """(vocabulary size, ``<|endoftext|>`` id) of the run's tokenizer, or of the one it will train first (the
        trainer makes exactly the rounded size, ``<|endoftext|>`` last). An existing directory is used as it is."""
        from .tokenizer import load_tokenizer, tokenizer_exists
        from .tokenizer.trainer import rounded_vocab_size

        if self.tokenizer_vocab_size is not None and not tokenizer_exists(self.tokenizer):
            planned = rounded_vocab_size(self.tokenizer_vocab_size)
            return planned, planned - 1
        tokenizer = load_tokenizer(self.tokenizer or "gpt2")
        return tokenizer.vocab_size, tokenizer.eot_id

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hyperparameters(self) -> dict[str, int | float | str | bool]:
        """The config as plain values, as every tracker takes them (TensorBoard's hparams refuse None and lists)."""
        plain = {}
        for key, value in self.to_dict().items():
            if isinstance(value, list):
                value = " | ".join(map(str, value))
            elif isinstance(value, dict):
                value = " | ".join(f"{k}={v}" for k, v in value.items())
            plain[key] = "null" if value is None else value
        return plain


# Muon's learning rate when matrix_lr is not set: modded-nanogpt's and nanochat's scale for these matrices.
MUON_LR = 0.02


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """``value`` converted to ``annotation`` where that is lossless (int -> float), or a ValueError."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
    if name in ("data", "token_shards") and isinstance(value, (dict, list)):
        return value  # a mixture: checked as a whole by validate (gpt_scratch.data.mixture)
    if value is None:  # `--run_dir ""` reads as null
        raise ValueError(f"{name} needs a value, got an empty one or null")
    origin = typing.get_origin(annotation)
    if name == "eval_tasks" and isinstance(value, str):  # --eval_tasks arc_easy,piqa, as eval.py --tasks takes them
        value = [task.strip() for task in value.split(",") if task.strip()]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError(f"{name} must map names to strings, e.g. {{arc_easy: data/arc_easy}}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. --data_name 2024 or a numeric run name
    if name == "mixed_precision" and value is False:  # YAML 1.1 reads `no`, its documented value, as false
        return "no"
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ValueError(f"{name} must be {annotation.__name__}, got {value!r} ({type(value).__name__})")
    return value


def build_config(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a dict, with clear errors for unknown keys and wrong types."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    checked = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {key!r}{hint}")
        checked[key] = _check_type(key, value, hints[key])
    return TrainConfig(**checked)


HELP_FLAGS = ("-h", "--help")


def options_help() -> str:
    """train.py's ``--help``: every TrainConfig field in the order and sections of its definition, with its type, its
    default and the comment written beside (or above) it, so that the options are documented in one place."""
    lines = [
        "usage: python train.py [CONFIG.yaml] [--key value | --key=value ...]",
        "",
        "Train a GPT and export a Hugging Face model directory. Every option below can be set in a YAML preset",
        "(configs/*.yaml) and overridden on the command line, which wins; values are read as YAML (3e-4, true, null,",
        "[a, b]). Launch on several processes with torchrun or accelerate launch.",
    ]
    defaults = {option.name: option for option in dataclasses.fields(TrainConfig)}
    above: list[str] = []
    for line in inspect.getsource(TrainConfig).splitlines()[1:]:
        text = line.strip()
        if text.startswith(("def ", "@")):
            break
        if text.startswith("# ---"):
            lines += ["", text.strip("# -") + ":"]
            above = []
        elif text.startswith("#"):
            above.append(text.lstrip("# "))
        elif (match := re.match(r"(\w+): ([^=]+?) = ", text)) and match.group(1) in defaults:
            option = defaults[match.group(1)]
            default = option.default_factory() if callable(option.default_factory) else option.default
            beside = text.split("  # ", 1)[1] if "  # " in text else ""
            shown = yaml.safe_dump(default, default_flow_style=True, width=1000).removesuffix("...\n").strip()
            lines.append(f"  --{option.name} ({match.group(2)}, default {shown})")
            lines += [f"      {comment}" for comment in [*above, beside] if comment]
            above = []
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that names a key twice (plain YAML keeps the last one silently: a
    mixture ``{a: 0.5, a: 0.5, b: 1}`` would train a at 33%)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ValueError(f"{key!r} is given twice in one mapping; name it once")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str, where: str, invalid: str | None = None) -> Any:
    """``text`` as YAML (a key given twice refused), or a ValueError naming ``where`` it came from (``invalid``: what
    to say of text that is not YAML at all, instead of the parser's words)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise ValueError(invalid or f"{where} is not valid YAML: {error}".replace("\n", " ")) from None
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def parse_args(argv: list[str]) -> TrainConfig:
    """``[CONFIG.yaml] [--key value | --key=value ...]`` to a TrainConfig (command line wins over the file);
    ``-h`` / ``--help`` print the options and exit."""
    if any(arg in HELP_FLAGS for arg in argv):
        print(options_help())
        raise SystemExit(0)
    values: dict[str, Any] = {}
    if argv and not argv[0].startswith("--"):
        path = Path(argv[0])
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = read_yaml(path.read_text(), str(path))
        if loaded is None:  # a file that was never saved, or emptied by mistake: not the intent to train defaults
            raise ValueError(f"{path} is empty; give it config keys (see configs/quickstart.yaml), or leave it out "
                             "to train the defaults")  # fmt: skip
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of config keys to values")
        values.update(loaded)
        argv = argv[1:]
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("--"):
            raise ValueError(f"expected --key value, got {arg!r}")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(argv):
                raise ValueError(f"{arg} needs a value")
            key, raw = arg[2:], argv[index + 1]
            index += 2
        if not raw.strip():  # an unset shell variable (--init_from "$MODEL"): never the same as leaving it out
            raise ValueError(f"--{key} is given an empty value; give one, or null to unset it")
        where = f"--{key} {raw!r}"
        values[key] = read_yaml(raw, where, f"{where} is not a valid value (read as YAML); quote it or fix it")
    return build_config(values)
