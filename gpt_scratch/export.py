"""Export a training checkpoint as a complete Hugging Face model directory.

python -m gpt_scratch.export runs/quickstart/checkpoints/step-001100 my-gpt [--push-to-hub you/my-gpt]
"""

import json
from pathlib import Path

from . import cli


def build_parser() -> cli.Parser:
    """The command line this program takes (``--help`` prints it)."""
    parser = cli.Parser(prog="python -m gpt_scratch.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint directory, e.g. runs/quickstart/checkpoints/step-001100")
    parser.add_argument("out_dir", help="the model directory to write (new, empty, or an earlier export)")
    parser.add_argument("--push_to_hub", default=None, help="a Hub repo id to publish to")
    return parser


if __name__ == "__main__":  # --help and a mistyped option answer now, not after torch and transformers load (seconds)
    build_parser().parse_args()

from safetensors.torch import load_file

from .chat_template import end_of_turn_ids, with_chat_template
from .checkpoint import checkpoint_problem, no_such_checkpoint
from .configuration_gpt_scratch import GPTScratchConfig
from .data.build import run_sources
from .data.mixture import describe
from .modeling_gpt_scratch import GPTScratchForCausalLM
from .reporting import card_sources, evaluation_description
from .saving import check_export_target, push_to_hub, save_with_model_card
from .tokenizer import load_tokenizer
from .tokenizer.text_tokenizer import TextTokenizer
from .train_config import build_config


def checkpoint_model(checkpoint: str | Path, use: str = "export") -> tuple[GPTScratchForCausalLM, TextTokenizer, dict]:
    """The model a checkpoint was training, with its weights, its tokenizer and the checkpoint's trainer state
    (``use``: what the user does with it, for the advice when it is damaged: export, start from)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(no_such_checkpoint(checkpoint))
    state_file, weights_file = checkpoint / "trainer_state.json", checkpoint / "model.safetensors"
    if not state_file.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no trainer_state.json)")
    if not weights_file.is_file():
        raise FileNotFoundError(
            f"{checkpoint} has no model.safetensors (a sharded FSDP checkpoint?); export it with "
            "`accelerate merge-weights` first, or from a run that ended normally (run_dir/model)"
        )
    if problem := checkpoint_problem(checkpoint):
        raise ValueError(f"checkpoint {checkpoint} is damaged: {problem}; {use} another checkpoint")
    state = json.loads(state_file.read_text())
    config = build_config(state["config"])  # a tokenizer directory that is gone fails here
    tokenizer = load_tokenizer(config.tokenizer)
    if problem := tokenizer.mismatch(str(checkpoint), state.get("tokenizer_identity", tokenizer.identity())):
        raise ValueError(f"{problem}; restore the tokenizer the run trained with")
    # A run started from a pretrained model records its architecture; a run from scratch is its config's.
    architecture = state.get("model_config")
    model = GPTScratchForCausalLM(GPTScratchConfig.from_dict(architecture) if architecture else config.model_config())
    weights = load_file(weights_file)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # Accelerate drops the tied lm_head copy when saving
        raise ValueError(f"{weights_file} does not match the run's model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if not all(tensor.isfinite().all() for tensor in model.state_dict().values()):
        raise ValueError(f"{weights_file} holds non-finite weights; {use} an earlier checkpoint")
    return model, tokenizer, state


def card_details(state: dict, results: dict | None = None) -> dict:
    """What the model card says of a run, from what its checkpoints record (``state``: a trainer state, with the
    step, config, history and origin) and, at the end of training, the last evaluation's full ``results`` (the
    tasks' every metric): the data (a mixture's table), tokens seen, validation figures before and after, the
    benchmark tasks, and the pretrained model it started from. The one card builder of train.py's export and of
    ``python -m gpt_scratch.export``."""
    config, history = build_config(state["config"]), state.get("history", {})
    sources, mixed = run_sources(config)
    last = dict(results or {})
    for name in ("val_loss", "val_bpb"):
        if name not in last and history.get(name):
            last[name] = history[name][-1][1]
    if mixed and "sources" not in last and history.get("val_sources") and history.get("drawn"):
        last["sources"] = {label: {name: curve[-1][1] for name, curve in figures.items()}
                           for label, figures in history["val_sources"].items()}  # fmt: skip
        last["drawn"] = dict(history["drawn"][-1][1])
    if "tasks" not in last and history.get("task_results"):  # the last evaluation's, as the history keeps them
        last["tasks"] = history["task_results"]
    origin = state.get("origin") or {}
    bpb_at = dict(history.get("val_bpb", []))  # none for a chat fine-tune: its loss counts the answers
    val_start = next(((loss, bpb_at.get(0)) for step, loss in history.get("val_loss", []) if step == 0), None)
    return {
        "data": describe(sources) if mixed else config.data,
        "steps": state["step"],
        "tokens_per_step": config.tokens_per_step,
        "val_loss": last.get("val_loss"),
        "val_bpb": last.get("val_bpb"),
        "evaluation": last.get("tasks"),
        "evaluation_description": evaluation_description(config) if last.get("tasks") else "",
        "base_model": origin.get("base_model"),
        "started_from": origin.get("description"),
        "val_start": val_start,
        "mixture": card_sources(sources, mixed, last) if "sources" in last else None,
        "chat_template": state.get("chat_template"),
        "core": last.get("core") or history.get("core_results"),
    }


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Rebuild the model a checkpoint was training and save it with tokenizer, generation config and model card."""
    checkpoint = Path(checkpoint)
    check_export_target(out_dir)  # before any work: a run directory given as the target would be deleted
    model, tokenizer, state = checkpoint_model(checkpoint)
    commands = [f"{entry['command']}  # from step {entry['from_step']}" for entry in state.get("commands", [])]
    hf_tokenizer = tokenizer.hf_tokenizer(model.config.n_positions)
    if state.get("chat_template"):  # a chat fine-tune's: its template and tokens, and generation stops at a turn's end
        hf_tokenizer = with_chat_template(hf_tokenizer, state["chat_template"])
        model.generation_config.eos_token_id = end_of_turn_ids(hf_tokenizer)
    return save_with_model_card(
        model,
        out_dir,
        hf_tokenizer,
        command="\n".join([*commands, f"python -m gpt_scratch.export {checkpoint} {out_dir}"]),
        tokenizer_name=tokenizer.description,
        **card_details(state),
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = export_checkpoint(args.checkpoint, args.out_dir)
    print(f"exported {out}")
    if args.push_to_hub and not push_to_hub(out, args.push_to_hub):
        raise SystemExit(1)


if __name__ == "__main__":
    cli.run(main)
