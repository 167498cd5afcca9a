"""GPT-2 weights in and out, and nanoGPT / build-nanogpt checkpoints in.

    python -m gpt_scratch.convert from-gpt2 gpt2 my-gpt2            # Hub id (network) or a local directory
    python -m gpt_scratch.convert to-gpt2 my-gpt gpt2-format/       # loads with GPT2LMHeadModel.from_pretrained
    python -m gpt_scratch.convert from-nanogpt ckpt.pt my-gpt       # {"model": state_dict, "model_args"|"config"}

The GPT-2 mapping itself lives with the model (``GPTScratchForCausalLM.from_gpt2`` / ``to_gpt2``), so it travels to
the Hub with it; this module adds the directories around it and the nanoGPT format.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import cli


def build_parser() -> cli.Parser:
    """The command line this program takes (``--help`` prints it)."""
    parser = cli.Parser(prog="python -m gpt_scratch.convert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("from-gpt2", help="a GPT-2 checkpoint (Hub id or directory) to a gpt-scratch model")
    one.add_argument("source", help="a Hub id (gpt2 ... gpt2-xl) or a GPT-2 directory")
    one.add_argument("out_dir", help="the model directory to write")
    two = commands.add_parser("to-gpt2", help="a gpt-scratch model directory to GPT-2 format")
    two.add_argument("model_dir", help="a gpt-scratch model directory")
    two.add_argument("out_dir", help="the GPT-2 directory to write")
    three = commands.add_parser("from-nanogpt", help="a nanoGPT / build-nanogpt .pt checkpoint to a model directory")
    three.add_argument("checkpoint", help="the .pt file")
    three.add_argument("out_dir", help="the model directory to write")
    three.add_argument("--activation", choices=["gelu", "gelu_new"], default=None,
                       help="the MLP's GELU (default: nanoGPT's gelu, build-nanogpt's gelu_new)")  # fmt: skip
    four = commands.add_parser("unpad", help="a copy with exactly vocab_size embedding and head rows (for vLLM)")
    four.add_argument("model_dir", help="a model directory with a padded vocabulary")
    four.add_argument("out_dir", help="the model directory to write")
    return parser


if __name__ == "__main__":  # --help and a mistyped option answer now, not after torch and transformers load (seconds)
    build_parser().parse_args()

import torch

from .configuration_gpt_scratch import GPTScratchConfig
from .modeling_gpt_scratch import GPTScratchForCausalLM
from .saving import check_export_target, move_into_place, save_tokenizer, save_with_model_card, staging_dir
from .tokenizer import gpt2_tokenizer
from .tokenizer.text_tokenizer import saved_tokenizer

GPT2_VOCAB_SIZE = 50257  # the tokens of GPT-2's tokenizer, which nanoGPT checkpoints use


def from_gpt2(name_or_path: str, out_dir: str | os.PathLike) -> Path:
    """A complete gpt-scratch model directory from any GPT-2 checkpoint transformers can load."""
    model = GPTScratchForCausalLM.from_gpt2(name_or_path)
    return save_with_model_card(
        model,
        out_dir,
        gpt2_tokenizer(model.config.n_positions),
        data=f"converted from GPT-2 checkpoint {name_or_path}",
        command=f"python -m gpt_scratch.convert from-gpt2 {name_or_path} {out_dir}",
    )


def to_gpt2(model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A directory ``GPT2LMHeadModel.from_pretrained`` (and every GPT-2 tool) loads: weights, config, tokenizer.

    The model directory's tokenizer comes along; GPT-2's is written both as ``tokenizer.json`` and as GPT-2's classic
    ``vocab.json`` + ``merges.txt``, which converters such as llama.cpp's and CTranslate2's read.
    """
    out_dir = Path(out_dir)
    check_export_target(out_dir)  # a directory of the user's files is refused, never written into
    GPTScratchConfig.from_pretrained(model_dir).to_gpt2_config()  # a model GPT-2 cannot represent fails before loading
    model = GPTScratchForCausalLM.from_pretrained(model_dir)
    gpt2 = model.to_gpt2()
    staging = staging_dir(out_dir)
    try:
        gpt2.save_pretrained(staging)
        # llama.cpp's converter (and other GPT-2 readers) still read the original GPT-2 config name for the context.
        config = json.loads((staging / "config.json").read_text())
        config["n_ctx"] = model.config.n_positions
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_tokenizer(saved_tokenizer(model_dir, model.config.n_positions), staging)
        move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def without_vocabulary_padding(model: GPTScratchForCausalLM) -> GPTScratchForCausalLM:
    """The same model with exactly ``vocab_size`` embedding and head rows, and the same logits (padded ids are never
    scored). For tools that size the head by ``vocab_size``: vLLM loads an untied padded head only this way."""
    if model.config.padded_vocab_size is None:
        return model
    unpadded = GPTScratchForCausalLM(GPTScratchConfig(**{**model.config.to_dict(), "padded_vocab_size": None}))
    rows = ("transformer.wte.weight", "lm_head.weight")
    state = {k: v[: model.config.vocab_size] if k in rows else v for k, v in model.state_dict().items()}
    unpadded.load_state_dict(state, strict=True)
    return unpadded.to(model.dtype).eval()


def unpad(model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A copy of a model directory without vocabulary padding (see ``without_vocabulary_padding``)."""
    model = without_vocabulary_padding(GPTScratchForCausalLM.from_pretrained(model_dir))
    return save_with_model_card(model, out_dir, saved_tokenizer(model_dir, model.config.n_positions),
                                data=f"{model_dir} without its vocabulary padding",
                                command=f"python -m gpt_scratch.convert unpad {model_dir} {out_dir}")  # fmt: skip


class _CheckpointConfig:
    """Stands in for a training script's config class inside a checkpoint: keeps its fields, runs no code."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def load_nanogpt_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(state dict, model hyper-parameters, flavour) of a nanoGPT or build-nanogpt checkpoint, loaded safely.

    ``torch.load(weights_only=True)`` never runs code from the file. build-nanogpt pickles its ``GPTConfig``
    dataclass; that one class (by name) is read as plain fields, anything else is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:
        raise ValueError(f"{path} is not a PyTorch checkpoint file ({error})") from None
    stand_ins = [(_CheckpointConfig, name) for name in unsafe if name.rsplit(".", 1)[-1] == "GPTConfig"]
    if len(stand_ins) != len(unsafe):
        refused = sorted(set(unsafe) - {name for _, name in stand_ins})
        raise ValueError(f"{path} contains objects that are not plain data ({', '.join(refused)}); refusing to load")
    with torch.serialization.safe_globals(stand_ins):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a nanoGPT checkpoint: no 'model' state dict (found {keys})")
    if "model_args" in checkpoint:  # karpathy/nanoGPT: train.py saves model_args as a dict
        args, flavour = dict(checkpoint["model_args"]), "nanogpt"
    elif "config" in checkpoint:  # build-nanogpt: the GPTConfig dataclass
        config = checkpoint["config"]
        args, flavour = dict(config if isinstance(config, dict) else vars(config)), "build-nanogpt"
    else:
        raise ValueError(f"{path} has a 'model' state dict but no 'model_args' or 'config' to size the model from")
    state = {}
    for key, tensor in checkpoint["model"].items():
        for prefix in ("_orig_mod.", "module."):  # torch.compile and DDP wrappers, in either order
            key = key.removeprefix(prefix)
        key = key.removeprefix("_orig_mod.")
        if key.endswith(".attn.bias"):
            continue  # nanoGPT's causal-mask buffer (without flash attention)
        state[key] = tensor
    return state, args, flavour


def from_nanogpt(path: str | os.PathLike, activation: str | None = None) -> GPTScratchForCausalLM:
    """Our model with a nanoGPT / build-nanogpt checkpoint's weights (the parameter names are already GPT-2's).

    nanoGPT's MLP uses exact GELU and build-nanogpt's the tanh approximation; ``activation`` overrides the guess.
    """
    state, args, flavour = load_nanogpt_checkpoint(path)
    missing = [k for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size") if k not in args]
    if missing:
        raise ValueError(f"{path}: the checkpoint's model arguments lack {', '.join(missing)}")
    has_bias = "transformer.ln_f.bias" in state
    # nanoGPT pads GPT-2's 50,257 tokens to 50,304 rows for speed. The extra rows are no tokens: keep them as padding
    # (never scored or generated) rather than as ids the tokenizer decodes to "".
    rows = args["vocab_size"]
    vocab_size, padded = (GPT2_VOCAB_SIZE, rows) if rows > GPT2_VOCAB_SIZE else (rows, None)
    config = GPTScratchConfig(
        n_layer=args["n_layer"], n_head=args["n_head"], n_embd=args["n_embd"], n_positions=args["block_size"],
        vocab_size=vocab_size, padded_vocab_size=padded, bias=has_bias, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        activation_function=activation or ("gelu" if flavour == "nanogpt" else "gelu_new"),
    )  # fmt: skip
    model = GPTScratchForCausalLM(config)
    state.setdefault("lm_head.weight", state.get("transformer.wte.weight"))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not match a GPT of this shape: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command in ("from-gpt2", "to-gpt2", "unpad"):
        cli.check_local_model(args.source if args.command == "from-gpt2" else args.model_dir)
    if args.command == "from-gpt2":
        out = from_gpt2(args.source, args.out_dir)
    elif args.command == "to-gpt2":
        out = to_gpt2(args.model_dir, args.out_dir)
    elif args.command == "unpad":
        out = unpad(args.model_dir, args.out_dir)
    else:
        model = from_nanogpt(args.checkpoint, args.activation)
        out = save_with_model_card(
            model,
            args.out_dir,
            None,
            data=f"converted from nanoGPT checkpoint {args.checkpoint}",
            command=f"python -m gpt_scratch.convert from-nanogpt {args.checkpoint} {args.out_dir}",
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
