"""Evaluate a saved or Hub model: HellaSwag exactly as lm-evaluation-harness scores it, or perplexity on any text.

    python eval.py hellaswag --model DIR_OR_HUB_ID --data data/hellaswag_sample.jsonl [--limit N] [--batch-size B]
    python eval.py hellaswag --model gpt2 --data Rowan/hellaswag                    # the full validation set (Hub)
    python eval.py perplexity --model DIR --data python-stdlib [--max-tokens N] [--stride S]
    python eval.py tasks --model DIR_OR_HUB_ID --tasks arc_easy,piqa,winogrande [--data TASK=PATH ...]
                         [--num_fewshot K] [--limit N] [--output results.json]
    python eval.py tasks --model DIR --tasks small_model_suite     # every task, and their mean centered accuracy
    python eval.py lm-eval-task --data data/hellaswag_sample.jsonl --out tasks/     # for lm_eval --include_path
    python eval.py lm-eval-task --data arc_easy=DIR --data piqa=DIR --out tasks/    # local copies of those tasks

--device picks the device (default: cuda when there is one) and --dtype (or --torch_dtype) the weights' dtype
(default auto: bfloat16 on a GPU, float32 on a CPU).

Results are printed and, with --output, saved by `evaluate.save` (which records versions and the time).
"""

import glob
import json
from pathlib import Path
from typing import TYPE_CHECKING

from gpt_scratch import cli
from gpt_scratch.hub import offline_unless_reachable

if TYPE_CHECKING:
    import torch


def resolve_dtype(dtype: str, device: str) -> "torch.dtype":
    """``auto``: bfloat16 on a GPU that has it (as models are trained there), float32 elsewhere."""
    import torch  # here, not at the top: --help answers before torch loads

    if dtype != "auto":
        return getattr(torch, dtype)
    on_gpu = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if on_gpu else torch.float32


def load_model(name_or_path: str, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpt_scratch.hub import offline_already

    cli.check_local_model(name_or_path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, trust_remote_code=True, dtype=resolve_dtype(dtype, device)
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=True)
    except OSError as error:
        if not offline_already() or Path(name_or_path).expanduser().is_dir():
            raise
        raise OSError(
            f"{name_or_path} is not in the local Hugging Face cache, and the Hub is offline; give a model directory "
            "(e.g. runs/quickstart/model, from python train.py configs/quickstart.yaml), or run once with the network "
            "to cache it"
        ) from error
    check_vocabularies_agree(name_or_path, model.config, len(tokenizer))
    return model.to(device).eval(), tokenizer


def check_vocabularies_agree(name_or_path: str, config, tokenizer_size: int) -> None:
    """A tokenizer with ids the model has no row for would fail deep inside the embedding, or score with another
    vocabulary's rows; gpt-scratch models have exactly their tokenizer's vocabulary (padding rows aside)."""
    vocab = config.vocab_size
    if tokenizer_size > vocab or (config.model_type == "gpt_scratch" and tokenizer_size != vocab):
        raise ValueError(
            f"{name_or_path}: the model's vocab_size is {vocab} but its tokenizer has {tokenizer_size} tokens; they "
            "were not trained together. Save the model with the tokenizer it was trained with"
        )


def task_data(pairs: list[str]) -> dict[str, str]:
    """``--data TASK=PATH`` flags as {task: path}."""
    data = {}
    for pair in pairs:
        name, separator, path = pair.partition("=")
        if not separator or not name or not path:
            raise ValueError(f"--data {pair!r} must be TASK=PATH, e.g. --data arc_easy=data/arc_easy/")
        data[name.strip()] = path
    return data


def loadable_tasks(names: list[str], data: dict[str, str], args) -> tuple[list[str], list[str]]:
    """The tasks whose items can be built, and why each other one cannot: a suite scores what it can (offline, the
    tasks given local data), then names every task it could not load, in one line."""
    from gpt_scratch.tasks import TASKS, task_items

    loaded, failures = [], []
    for name in names:
        try:
            task_items([name], data, args.num_fewshot, args.limit)
            loaded.append(name)
        except ConnectionError:
            failures.append(f"{name}: the Hub's {TASKS[name].hub[0]} could not be reached")
        except cli.USER_ERRORS as error:
            failures.append(str(error) if str(error).startswith(f"{name}:") else f"{name}: {error}")
    return loaded, failures


def score_tasks(model, tokenizer, names: list[str], data: dict[str, str], args) -> dict:
    """Score, print a table (task, metric, value, stderr, n), and return the results."""
    from gpt_scratch.tasks import evaluate_tasks

    results = evaluate_tasks(model, tokenizer, names, data, args.num_fewshot, args.limit, args.batch_size,
                             progress=True)  # fmt: skip
    print(f"{'task':<16} {'metric':<12} {'value':>9} {'stderr':>9} {'n':>7}")
    for name in names:
        result = results[name]
        for metric in ("acc", "acc_norm", "perplexity"):
            if metric in result:
                stderr = result.get(f"{metric}_stderr")
                shown = "" if stderr is None else f"{stderr:9.4f}"
                print(f"{name:<16} {metric:<12} {result[metric]:9.4f} {shown:>9} {result['n']:7d}")
    if "aggregate" in results:
        print(f"{'aggregate':<16} {'centered_acc':<12} {results['aggregate']['centered_acc']:9.4f}")
    return results


def score_core(model, tokenizer, bundle, labels: list[str], args) -> dict:
    """CORE (all of it, or the ``labels`` asked for), as nanochat scores it; a table of each task's accuracy and
    centred accuracy, CORE, and GPT-2 1.5B's for comparison."""
    from gpt_scratch.tasks.core import GPT2_XL_CORE, evaluate_core

    result = evaluate_core(model, tokenizer, bundle, labels or None, args.limit, args.batch_size, progress=True)
    print(f"{'CORE task':<36} {'acc':>8} {'centered':>9} {'n':>6}")
    for label, figures in result["tasks"].items():
        print(f"{label:<36} {figures['acc']:8.4f} {figures['centered']:9.4f} {figures['n']:6d}")
    print(f"{'CORE':<36} {'':>8} {result['core']:9.4f}   (GPT-2 1.5B: {GPT2_XL_CORE})")
    return {"core": result["core"], "tasks": result["tasks"]}


def write_lm_eval_copies(data: list[str], out: str) -> None:
    if len(data) == 1 and "=" not in data[0]:  # a HellaSwag file, as before the other tasks
        from gpt_scratch.hellaswag import write_lm_eval_task

        written = write_lm_eval_task(data[0], out)
        print(f"wrote task 'hellaswag_local' to {written}; run: lm_eval --include_path {out} --tasks hellaswag_local")
        return
    from gpt_scratch.tasks import write_lm_eval_tasks

    names = ",".join(write_lm_eval_tasks(task_data(data), out))
    print(f"wrote tasks {names} to {out}; run: lm_eval --include_path {out} --tasks {names} ...")


def build_parser() -> cli.Parser:
    """The command line this program takes (``--help`` prints it)."""
    parser = cli.Parser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from gpt_scratch.tasks.definitions import TASKS  # the task table only: no model, no data

    hellaswag = commands.add_parser("hellaswag", help="HellaSwag acc / acc_norm, identical to lm-eval's")
    hellaswag.add_argument("--model", required=True, help="a model directory or Hub id")
    hellaswag.add_argument("--data", default="data/hellaswag_sample.jsonl", help=".jsonl/.parquet file or Hub id")
    hellaswag.add_argument("--limit", type=cli.positive_int, default=None, help="the first N items (default: all)")
    hellaswag.add_argument("--batch_size", type=cli.positive_int, default=32, help="endings scored per forward")
    hellaswag.add_argument("--style", default="lm-eval", choices=["lm-eval", "nanogpt"],
                           help="lm-eval's prompt and metrics, or build-nanogpt's hellaswag.py")  # fmt: skip

    perplexity = commands.add_parser("perplexity", help="validation loss and perplexity on a text source")
    perplexity.add_argument("--model", required=True, help="a model directory or Hub id")
    perplexity.add_argument("--data", default="python-stdlib", help="any source gpt_scratch.data reads")
    perplexity.add_argument("--name", default=None, help="Hub dataset config")
    perplexity.add_argument("--split", default="train", help="the dataset split")
    perplexity.add_argument("--text_column", default="text", help="the column that holds the text")
    perplexity.add_argument("--max_tokens", type=cli.positive_int, default=100_000, help="tokens scored, at most")
    perplexity.add_argument("--seq_len", type=int, default=None, help="window length (default: the model's)")
    perplexity.add_argument("--stride", type=int, default=None, help="window step (default: the window length)")

    suite = commands.add_parser("tasks", help="benchmark tasks (ARC, PIQA, ...), each identical to lm-eval's")
    suite.add_argument("--model", required=True, help="a model directory or Hub id")
    suite.add_argument("--tasks", default="small_model_suite", help="comma-separated task names or groups: "
                       f"{', '.join(TASKS)}; small_model_suite (all ten); core (DCLM's CORE, as nanochat scores it; "
                       "core:LABEL for one of its tasks)")  # fmt: skip
    suite.add_argument("--data", action="append", default=[], metavar="TASK=PATH",
                       help="a task's local data: a file (the scored split) or a directory of split files; "
                       "repeat per task (default: the Hub dataset lm-eval reads); core=DIR: the CORE eval bundle "
                       "(default: downloaded once into ~/.cache/gpt_scratch)")  # fmt: skip
    suite.add_argument("--num_fewshot", type=int, default=0, help="examples before each item, as lm-eval's")
    suite.add_argument("--limit", type=cli.positive_int, default=None, help="the first N items of each task "
                       "(CORE's max_per_task: the first N after its shuffle) (default: all)")  # fmt: skip
    suite.add_argument("--batch_size", type=cli.positive_int, default=32, help="sequences scored per forward")

    task = commands.add_parser("lm-eval-task", help="write lm-eval tasks that read local files")
    task.add_argument("--data", required=True, action="append", metavar="FILE | TASK=PATH",
                      help="a HellaSwag file, or TASK=PATH (a file or directory of split files), per task")  # fmt: skip
    task.add_argument("--out", required=True, help="the directory to write the task files to")

    for sub in (hellaswag, perplexity, suite):
        sub.add_argument("--device", default="auto", help="cpu, cuda, cuda:1..., or auto: cuda when there is one, else "
                         "cpu (default: auto)")  # fmt: skip
        sub.add_argument(
            "--dtype",
            "--torch_dtype",
            default="auto",
            choices=["auto", "float32", "bfloat16", "float16"],
            help="weights' dtype; auto: bfloat16 on a GPU, float32 on a CPU",
        )
        sub.add_argument("--output", default=None, help="save results here with evaluate.save (file or folder)")
    return parser


def offline_unless_hub_reachable(args, names: list[str], data: dict[str, str]) -> None:
    """Before anything loads: a model path that is not there is one line; and when something would come from the Hub
    and the Hub cannot be reached, the run works from the cache at once (``gpt_scratch.hub``), not after retries."""
    cli.check_local_model(args.model, files=False)
    if wanted := from_the_hub(args, names, data):
        offline_unless_reachable(", ".join(wanted))


def from_the_hub(args, names: list[str], data: dict[str, str]) -> list[str]:
    """What this command would download: the model unless it is a directory, the data not given as local files."""
    wanted = [] if Path(args.model).expanduser().is_dir() else [args.model]
    if args.command == "tasks":
        wanted += [f"{name}'s data" for name in names if name not in data]
    elif args.command == "hellaswag" and not Path(args.data).exists():
        wanted.append(f"HellaSwag ({args.data})")
    elif args.command == "perplexity" and args.data != "python-stdlib" and not glob.glob(args.data):
        wanted.append(args.data)
    return wanted


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    if args.command == "lm-eval-task":
        write_lm_eval_copies(args.data, args.out)
        return
    if args.command == "tasks":
        from gpt_scratch.tasks import resolve_task_names
        from gpt_scratch.tasks.core import bundle_directory, core_names

        core, others = core_names([name.strip() for name in args.tasks.split(",") if name.strip()])
        names = resolve_task_names(others) if others or core is None else []  # bad names fail before the model loads
        data = task_data(args.data)
        bundle = data.pop("core", None)  # --data core=DIR: the CORE bundle
        offline_unless_hub_reachable(args, names, data)  # before the tasks' data loads
        bundle = bundle_directory(bundle) if core is not None else None  # cached, or downloaded, or one line why
        loaded, failures = loadable_tasks(names, data, args)
        if loaded or core is not None:
            model, tokenizer = load_model(args.model, args.device, args.dtype)
            results = score_tasks(model, tokenizer, loaded, data, args) if loaded else {}
            if core is not None:
                results["core"] = score_core(model, tokenizer, bundle, core, args)
            if args.output:
                from gpt_scratch.atomic import write_json

                output = Path(args.output)
                output = output / "results.json" if output.is_dir() else output  # "file or folder", as --help says
                write_json(output, results)
                print(f"wrote {output}")
        if failures:
            raise ValueError(
                f"scored {len(loaded)} of {len(names)} tasks; could not load {len(failures)}: {' | '.join(failures)}. "
                "Give each its data with --data TASK=PATH (a file in its schema, or a directory of split files: "
                "docs/evaluation.md)"
            )
        return

    offline_unless_hub_reachable(args, [], {})
    model, tokenizer = load_model(args.model, args.device, args.dtype)
    if args.command == "hellaswag":
        from gpt_scratch.hellaswag import evaluate_hellaswag

        result = evaluate_hellaswag(
            model, tokenizer, args.data, batch_size=args.batch_size, limit=args.limit, style=args.style, progress=True
        )
    else:
        from gpt_scratch.data import TextSource
        from gpt_scratch.perplexity import evaluate_perplexity, source_tokens, token_byte_lengths

        source = TextSource(args.data, args.name, args.split, args.text_column)
        tokens = source_tokens(source, args.max_tokens, tokenizer)  # the model's own tokenizer
        result = evaluate_perplexity(model, tokens, args.seq_len, args.stride, progress=True,
                                     token_bytes=token_byte_lengths(tokenizer))  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.output:
        import evaluate

        evaluate.save(args.output, **result, task=args.command, model=args.model, data=args.data)


if __name__ == "__main__":
    cli.run(main)
