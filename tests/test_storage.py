"""Storage problems on real filesystems (tmpfs mounts: read-only, or too small): one line naming the directory and
the fix, before step 1 where possible, never a partial checkpoint or shard left behind, the previous one intact."""

import json

import pytest
import torch
from train_runs import run_command, run_train

from gpt_scratch.checkpoint import checkpoint_dirs, checkpoint_problem
from gpt_scratch.data import TextSource, prepare_shards
from gpt_scratch.storage import StorageError

# GPT-2's tokenizer: the sizes below are those of a tiny model with its 50,257-token embedding.
ARGS = [
    "--tokenizer",
    "gpt2",
    "--tokens_per_step",
    "128",
    "--hellaswag_data",
    "null",
    "--max_steps",
    "6",
    "--checkpoint_interval",
    "2",
]


@pytest.mark.parametrize("where", ["run_dir", "checkpoints", "export_dir"])
def test_a_read_only_run_dir_checkpoints_dir_or_export_dir_fails_before_step_1(mount, corpus, tmp_path, where):
    """The export_dir was found read-only only after the last step (the export's staging directory beside it)."""
    export = []
    if where == "run_dir":
        run_dir = mount("ro", 4, read_only=True)
    elif where == "checkpoints":
        run_dir = mount("rw", 4).parent / "rw"
        mount("rw/checkpoints", 4, read_only=True)
    else:
        run_dir, export = tmp_path / "run", ["--export_dir", str(mount("ro", 4, read_only=True) / "model")]
    result = run_train(run_dir, "--data", str(corpus), *ARGS, *export, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    expected = "the run could not export its model at the end" if export else "the run could not save its checkpoints"
    assert f"is not writable (Read-only file system): {expected}" in result.stderr, result.stderr[-2000:]
    assert "eval step 0" not in result.stderr + result.stdout  # before step 1, not at the first checkpoint


def test_too_little_space_for_the_next_checkpoint_is_one_line_and_the_last_stays_intact(mount, corpus):
    """A tiny model's checkpoint is about 40 MB: 60 MB hold one, and the next is refused before it is written."""
    run_dir = mount("small", 60)
    result = run_train(run_dir, "--data", str(corpus), *ARGS, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "not enough space in" in result.stderr and "about 0.04 GB needed" in result.stderr, result.stderr[-2000:]
    assert "step-000002 is intact" in result.stderr
    (kept,) = checkpoint_dirs(run_dir)
    assert checkpoint_problem(kept) is None and not list(run_dir.glob("checkpoints/.tmp-*"))


def test_a_disk_that_fills_during_a_save_leaves_no_partial_checkpoint(mount):
    """The first save is estimated from the model (weights and two optimizer states, 40 MB); the stdlib's 1000-document
    shuffle buffer adds 9 MB more than that, so 46 MB pass the check and fill up during the write."""
    run_dir = mount("full", 46)
    result = run_train(run_dir, "--data", "python-stdlib", "--shuffle_buffer", "1000", *ARGS, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "could not write checkpoint step-000002 in" in result.stderr and "the disk is full" in result.stderr
    assert "no checkpoint was written yet" in result.stderr, result.stderr[-2000:]
    assert not list(run_dir.glob("checkpoints/*"))  # the half-written .tmp-step-000002 is gone


def test_prepare_on_a_full_disk_says_so_and_leaves_no_temporary_file(mount):
    """1 MB holds one shard of 300k tokens (600 kB): the second is refused in one line, nothing half-written stays,
    and the manifest still describes the finished shard, so a rerun with room continues from there."""
    out = mount("shards", 1)
    with pytest.raises(StorageError, match=r"could not write shard_000001\.npy in .*: the disk is full .* continues"):
        prepare_shards(TextSource("python-stdlib"), out, shard_tokens=300_000)
    # The command line says the same in one line (it used to print it inside a StorageError traceback).
    for path in out.iterdir():
        path.unlink()
    result = run_command("-m gpt_scratch.data", "prepare", "python-stdlib", str(out), "--shard-tokens", "300000",
                         check=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: could not write shard_000001.npy in ") and "disk is full" in last_line
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard_000000.npy"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 1


def test_an_export_whose_tokenizer_does_not_fit_is_one_line_and_leaves_nothing(mount):
    """1 MB holds the weights of a 4-wide model of GPT-2's vocabulary (0.8 MB), not its 2 MB tokenizer.json, which the
    tokenizers library fails to write with a plain Exception ("No space left on device (os error 28)")."""
    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM, gpt2_tokenizer
    from gpt_scratch.saving import save_with_model_card

    model = GPTScratchForCausalLM(GPTScratchConfig(n_layer=1, n_head=1, n_embd=4, n_positions=32))
    disk = mount("export", 1)
    with pytest.raises(StorageError, match=r"could not write the model in .*: the disk is full .* Free space"):
        save_with_model_card(model, disk / "model", gpt2_tokenizer(32), data="d", command="c")
    assert not list(disk.iterdir())  # the half-written directory beside the target is gone


def test_a_write_refused_by_a_read_only_file_system_is_not_advised_to_free_space(tmp_path):
    import errno

    from gpt_scratch.storage import write_failure

    error = write_failure(OSError(errno.EROFS, "Read-only file system"), tmp_path, 10**6, "the model", "Free space")
    assert str(error) == f"could not write the model in {tmp_path}: Read-only file system. Make {tmp_path} writable, " \
        "or choose another directory"  # fmt: skip


def test_the_best_weights_are_replaced_durably(tmp_path, monkeypatch):
    """export_best's weights replaced best/ with a bare os.replace: after a power loss the new name could stand over
    unwritten data. Now the file is fsynced before the rename and the directory after it, as every checkpoint is."""
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    from gpt_scratch.checkpoint import BEST_WEIGHTS, keep_best_weights

    from conftest import make_modern

    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    model = make_modern()
    try:
        keep_best_weights(Accelerator(cpu=True), model, tmp_path)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # the next in-process run builds its own
    best = tmp_path / BEST_WEIGHTS
    assert str(best.with_name(f".{best.name}.tmp")) in synced and str(best.parent) in synced, synced
    assert synced.index(str(best.parent)) > synced.index(str(best.with_name(f".{best.name}.tmp")))
    assert all(torch.equal(tensor, model.state_dict()[name]) for name, tensor in load_file(best).items())
