"""Shared fixtures: tiny GPT-2 models with random weights, and ours holding the very same weights."""

import os
import subprocess

# The suite never touches the network; set before transformers/datasets read their environment.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from train_runs import TINY as TINY_ARGS  # noqa: E402
from train_runs import run_train, write_train_corpus  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from gpt_scratch import (
    GPTScratchConfig,  # noqa: E402
    GPTScratchForCausalLM,  # noqa: E402
)
from gpt_scratch.data import TextSource  # noqa: E402
from gpt_scratch.data.sources import SourceTexts  # noqa: E402
from gpt_scratch.modeling_gpt_scratch import state_dict_from_gpt2  # noqa: E402
from gpt_scratch.tokenizer.trainer import train_tokenizer  # noqa: E402

TINY = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 128, "resid_pdrop": 0.0, "embd_pdrop": 0.0}
# Every option of the modern recipe at once (rotary, RMSNorm, QK-norm, ReLU², soft-capping, untied head, no biases).
MODERN = {"position_embedding_type": "rope", "rope_theta": 500.0, "norm_type": "rmsnorm", "qk_norm": True,
          "activation_function": "relu2", "final_logit_softcapping": 3.0, "tie_word_embeddings": False,
          "bias": False}  # fmt: skip


def make_gpt2(seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> GPT2LMHeadModel:
    """A randomly initialised transformers GPT-2: the reference every parity test compares against."""
    torch.manual_seed(seed)
    config = GPT2Config(**{**TINY, "attn_pdrop": 0.0, **overrides})
    model = GPT2LMHeadModel(config)
    # GPT-2's default init leaves biases at zero and LayerNorms at identity; random values there make the parity
    # tests also cover every bias and LayerNorm parameter.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                param.add_(torch.randn_like(param) * 0.1)
    model.config._attn_implementation = attn_implementation
    return model.eval()


def make_modern(seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> GPTScratchForCausalLM:
    """A tiny model of the modern architecture, randomly initialised, norm gains random too so tests cover them.

    The cap of 3 is low on purpose: random logits reach it, so soft-capping changes what is compared.
    """
    torch.manual_seed(seed)
    model = GPTScratchForCausalLM(GPTScratchConfig(**{**TINY, "attn_pdrop": 0.0, **MODERN, **overrides}))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.1)
        model.lm_head.weight.mul_(10.0)  # logits of a few units: the cap bites, without saturating
    model.config._attn_implementation = attn_implementation
    return model.eval()


def ours_from(gpt2: GPT2LMHeadModel, attn_implementation: str = "sdpa") -> GPTScratchForCausalLM:
    """Our model with exactly the weights of ``gpt2``."""
    model = GPTScratchForCausalLM(GPTScratchConfig.from_gpt2_config(gpt2.config))
    model.load_state_dict(state_dict_from_gpt2(gpt2.state_dict()), strict=True)
    model.config._attn_implementation = attn_implementation
    return model.eval()


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory) -> Path:
    """The tiny training corpus of train.py's tests (400 documents in 4 jsonl shards), written once per test run."""
    return write_train_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus(train_corpus) -> Path:
    """``train_corpus`` under the name the tests use (a module may name its own corpus so)."""
    return train_corpus


@pytest.fixture(scope="session", autouse=True)
def tiny_tokenizer(tmp_path_factory, train_corpus) -> Path:
    """The tokenizer of every tiny train.py run: a 384-token byte-level BPE of the documents of ``corpus``, trained
    once per test process (under a second) and named by ``train_runs.TINY`` from then on. With GPT-2's 50,257
    tokens the embedding and head were 97% of the tiny model, of its FLOPs and of its checkpoints' bytes (a 24-step
    run with three checkpoints: 25 s; with this one: 3 s). A test about GPT-2's tokenizer passes ``--tokenizer
    gpt2`` (the last value wins)."""
    path = tmp_path_factory.mktemp("tokenizer") / "tiny"
    train_tokenizer(SourceTexts(TextSource(str(train_corpus)), val_docs=10), 384, path)
    TINY_ARGS.extend(["--tokenizer", str(path)])
    return path


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, corpus) -> Callable[..., Path]:
    """``reference_run(*args, nproc=1)``: the run directory of an uninterrupted ``train.py`` run on ``corpus``, made
    once per test run for each distinct set of arguments: the runs that interrupted, resumed or relaunched ones are
    compared with, shared by every test that compares with the same one."""
    runs: dict[tuple, Path] = {}

    def reference(*args: str, nproc: int = 1) -> Path:
        key = (args, nproc)
        if key not in runs:
            runs[key] = tmp_path_factory.mktemp("reference") / "run"
            run_train(runs[key], "--data", str(corpus), *args, nproc=nproc)
        return runs[key]

    return reference


@pytest.fixture(scope="session")
def gpt2_model() -> GPT2LMHeadModel:
    return make_gpt2()


@pytest.fixture(scope="session")
def modern_model() -> GPTScratchForCausalLM:
    return make_modern()


@pytest.fixture(params=["gpt2", "modern"])
def either_model(request, our_model, modern_model) -> GPTScratchForCausalLM:
    """Each architecture in turn: tests of behaviour both must have."""
    return our_model if request.param == "gpt2" else modern_model


@pytest.fixture(scope="session")
def our_model(gpt2_model) -> GPTScratchForCausalLM:
    return ours_from(gpt2_model)


def left_padded_batch(seed: int = 1, lengths=(12, 7, 3), vocab: int = 50257) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask of rows of different lengths, padded on the left with <|endoftext|>."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), 50256, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, width - length :] = torch.randint(0, vocab - 1, (length,), generator=generator)
        mask[row, width - length :] = 1
    return ids, mask


@pytest.fixture()
def mount(tmp_path):
    """mount(name, megabytes, read_only=False) -> a tmpfs directory; unmounted afterwards. Needs root (CI has it)."""
    mounted = []

    def make(name: str, megabytes: int, read_only: bool = False) -> Path:
        target = tmp_path / name
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(target)],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
        mounted.append(target)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        return target

    yield make
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(scope="session")
def benchmark_task_data(tmp_path_factory) -> dict[str, str]:
    """{task: directory of split files}: made-up items of every benchmark task (tests/task_data.py)."""
    from task_data import write_task_data

    from gpt_scratch.tasks import TASKS

    return write_task_data(tmp_path_factory.mktemp("task_data"), TASKS)


@pytest.fixture(scope="session")
def lm_eval_tasks(tmp_path_factory, benchmark_task_data):
    """lm-eval's TaskManager over local copies of lm-eval's own tasks: ``hellaswag_local`` on
    data/hellaswag_sample.jsonl, and ``<task>_items`` on ``benchmark_task_data``. Indexing lm-eval's tasks costs
    about 10 s, so it is done once per test process."""
    from lm_eval.tasks import TaskManager

    from gpt_scratch.hellaswag import write_lm_eval_task
    from gpt_scratch.tasks import write_lm_eval_tasks

    tasks = tmp_path_factory.mktemp("lm_eval_tasks")
    write_lm_eval_tasks(benchmark_task_data, tasks, suffix="_items")
    write_lm_eval_task(Path(__file__).resolve().parent.parent / "data" / "hellaswag_sample.jsonl", tasks)
    return TaskManager(include_path=str(tasks))


# Tests that start several processes (10-60 s each), by a word of their names: dealt out right after the docs test.
STARTS_PROCESSES = ("two_processes", "streaming_processes", "kill_9", "sigterm", "accelerate_launch", "fsdp",
                    "signal_reaching", "killed_mid_run", "each_program", "without_the_package", "without_gpt_scratch",
                    "lm_eval_cli", "one_of_two_processes", "every_document_exactly_once", "in_a_new_process",
                    "muon_under_two")  # fmt: skip


def pytest_collection_modifyitems(items: list) -> None:
    """The longest tests first: the docs test (about two minutes, alone on one worker), then those that start
    processes. Dealt out last, they would end the run with one worker busy and the other idle."""

    def cost(item) -> int:
        if item.get_closest_marker("docs"):
            return 0
        return 1 if any(word in item.name for word in STARTS_PROCESSES) else 2

    items.sort(key=cost)  # stable: the rest keep their order


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker more than cores. Much of the suite waits on processes it started (launchers, gloo's
    rendezvous, a test polling for the checkpoint to kill at), and a third worker on 2 cores fills that time: 553 s
    against 579 s for the whole suite (pyproject.toml caps it at 4)."""
    return len(os.sched_getaffinity(0)) + 1
