"""Off the happy path: an export never replaces what is not a model, the model card describes the model it is in,
recovery advice works however often a run diverges, and settings that cannot be meant are refused by name."""

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiktoken
from data_fixtures import make_documents
from tokenizers import Tokenizer
from train_runs import run_command, run_train
from transformers import AutoModelForCausalLM

from gpt_scratch.data import TextSource
from gpt_scratch.data.sources import SourceTexts
from gpt_scratch.divergence import lower_learning_rates, quarantine_after
from gpt_scratch.run_lock import RunLock
from gpt_scratch.saving import save_with_model_card
from gpt_scratch.storage import StorageError
from gpt_scratch.tokenizer import load_tokenizer
from gpt_scratch.tokenizer.text_tokenizer import byte_of_char
from gpt_scratch.tokenizer.trainer import train_tokenizer
from gpt_scratch.train_config import TrainConfig, build_config, parse_args

from conftest import make_gpt2, make_modern, ours_from


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_an_export_never_replaces_a_run_a_directory_of_other_files_or_the_working_directory(tmp_path, corpus):
    run_dir = tmp_path / "run"
    args = ["--data", str(corpus), "--hellaswag_data", "null", "--max_steps", "2", "--checkpoint_interval", "2"]
    run_train(run_dir, *args)
    (run_dir / "notes.txt").write_text("the user's own file")
    checkpoint = run_dir / "checkpoints" / "step-000002"
    user_dir = tmp_path / "papers"
    user_dir.mkdir()
    (user_dir / "draft.tex").write_text("\\section{}")
    # Files whose names an export also writes are still the user's: a project with notes, code and a config of its
    # own; a code directory; a directory of notes alone.
    project, code, notes = tmp_path / "myproj", tmp_path / "scripts", tmp_path / "notes"
    for directory, files in ((project, {"README.md": "# my notes", "analysis.py": "print(1)", "config.json": "{}"}),
                             (code, {"make_notebook.py": "x = 1", "make_sample.py": "y = 2"}),
                             (notes, {"README.md": "# my notes"})):  # fmt: skip
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
    before = snapshot(tmp_path)
    not_ours = "that no export of this project wrote (no .gpt-scratch-export.json"
    for target, problem in (
        (run_dir, f"{run_dir} is a run directory (it holds checkpoints/, loss.png, model/"),
        (tmp_path, f"{tmp_path} holds myproj/, notes/, papers/, run/ and 1 more {not_ours}"),
        (user_dir, f"{user_dir} holds draft.tex {not_ours}"),
        (run_dir / "checkpoints", f"{run_dir / 'checkpoints'} holds step-000002/ {not_ours}"),
        (project, f"{project} holds README.md, analysis.py, config.json {not_ours}"),
        (code, f"{code} holds make_notebook.py, make_sample.py {not_ours}"),
        (notes, f"{notes} holds README.md {not_ours}"),
    ):
        result = run_command("-m gpt_scratch.export", str(checkpoint), str(target), check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"error: cannot export into {target}: {problem}" in result.stderr, result.stderr
        assert f"or remove {target} yourself if it may go" in result.stderr
    # "." and any directory above the working directory: refused before anything is read.
    for target in (".", ".."):
        result = run_command("-m gpt_scratch.export", str(checkpoint), target, check=False, cwd=user_dir)
        assert f"{target} is the working directory or holds it" in result.stderr, result.stderr
    # A model the user saved with transformers, with a card of notes that opens with metadata as every Hub card does
    # (it used to pass as an earlier export and be replaced, notes and all), and the same downloaded-like directory
    # for to-gpt2: refused, untouched.
    mine = tmp_path / "myhf"
    make_gpt2().save_pretrained(mine)
    (mine / "README.md").write_text("---\ntitle: my own GPT-2 experiment\n---\n\nNotes: lr 3e-4 diverged\n")
    for program, given in (("-m gpt_scratch.export", [str(checkpoint)]), ("-m gpt_scratch.convert", ["to-gpt2",
                           str(run_dir / "model")])):  # fmt: skip
        result = run_command(program, *given, str(mine), check=False)
        assert f"error: cannot export into {mine}: {mine} holds README.md, config.json, generation_config.json, " \
            f"model.safetensors {not_ours}" in result.stderr, result.stderr  # fmt: skip
    result = run_command("-m gpt_scratch.convert", "to-gpt2", str(run_dir / "model"), str(project), check=False)
    assert f"error: cannot export into {project}: {project} holds README.md" in result.stderr, result.stderr
    before = snapshot(tmp_path)
    # train.py with --export_dir at the run directory itself, or at a directory of code: refused before step 1.
    for target in (run_dir, code):
        result = run_train(run_dir, *args, "--max_steps", "4", "--resume", "auto", "--export_dir", str(target),
                           check=False)  # fmt: skip
        assert result.returncode == 1 and "cannot export into" in result.stderr and "step " not in result.stdout
    # A new run (no --resume) in the finished run's directory: refused before step 1, with both ways out.
    result = run_train(run_dir, *args, "--max_steps", "4", check=False)
    assert result.returncode == 1 and "step " not in result.stdout, result.stdout + result.stderr
    assert f"error: {run_dir} holds another run (checkpoints/step-000002, the exported model {run_dir / 'model'})" \
        in result.stderr and f"--resume auto, or start this one in another directory, e.g. --run_dir {run_dir}-2" \
        in result.stderr, result.stderr  # fmt: skip
    # ... and a run of other settings there is not told to resume it (that would be refused): another directory.
    result = run_train(run_dir, *args, "--max_steps", "4", "--seq_len", "16", check=False)
    assert f"error: {run_dir} holds another run with other settings (seq_len: 32 there, 16 here), which a new run " \
        f"there would replace. Start this one in another directory, e.g. --run_dir {run_dir}-2" in result.stderr, \
        result.stderr  # fmt: skip
    assert snapshot(tmp_path) == before
    # An earlier export (the run's own, a to-gpt2 output) is replaced; a new directory is made.
    gpt2_format = tmp_path / "gpt2-format"
    run_command("-m gpt_scratch.convert", "to-gpt2", str(run_dir / "model"), str(gpt2_format))
    for target in (run_dir / "model", tmp_path / "new" / "model", gpt2_format):
        run_command("-m gpt_scratch.export", str(checkpoint), str(target))
        assert AutoModelForCausalLM.from_pretrained(target, trust_remote_code=True).config.n_layer == 2
    # ... but not once the user has written into it: a note in the card, a file of their own.
    with open(gpt2_format / "README.md", "a") as card:
        card.write("\nMy notes: exported at step 2.\n")
    (run_dir / "model" / "eval-results.json").write_text("{}")
    for target, changed in ((gpt2_format, "README.md"), (run_dir / "model", "eval-results.json")):
        kept = snapshot(target)
        result = run_command("-m gpt_scratch.export", str(checkpoint), str(target), check=False)
        assert f"{changed} in {target} changed since it was exported" in result.stderr, result.stderr
        assert snapshot(target) == kept
    assert snapshot(run_dir / "checkpoints") == {k[len("run/checkpoints/"):]: v for k, v in before.items()
                                                 if k.startswith("run/checkpoints/")}  # fmt: skip


def test_the_model_card_describes_the_architecture_its_config_holds(tmp_path):
    gpt2_card = (save_with_model_card(ours_from(make_gpt2()), tmp_path / "gpt2", None, data="d", command="c")
                 / "README.md").read_text()  # fmt: skip
    assert "pre-LayerNorm blocks, learned positions, gelu_new MLP, LM head tied to the embedding" in gpt2_card
    modern_card = (save_with_model_card(make_modern(), tmp_path / "modern", None, data="d", command="c")
                   / "README.md").read_text()  # fmt: skip
    assert ("pre-RMSNorm blocks, rotary positions (base 500), relu2 MLP, QK-norm, logits soft-capped at 3, no biases, "
            "untied LM head") in modern_card  # fmt: skip
    assert "learned positions" not in modern_card and "tied to the embedding" not in modern_card


def test_recovery_advice_stays_valid_however_many_times_a_run_diverges():
    """Each divergence lowers every learning rate by the same factor, min_lr too: min_lr used to stay, so the second
    recovery command failed validation (min_lr above lr)."""
    values = TrainConfig(lr=3e-3, min_lr=3e-4, optimizer="muon", matrix_lr=0.02).to_dict()
    for _ in range(6):
        config = build_config(values)
        lower = lower_learning_rates(config)
        assert lower["min_lr"] / lower["lr"] == pytest.approx(config.min_lr / config.lr, rel=1e-2)
        values = {**values, **lower}
    assert build_config(values).lr < 1e-7


def test_a_second_divergence_at_the_same_step_sets_the_new_checkpoint_aside_too(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    good = checkpoints / "step-000005"
    for attempt in range(3):
        (checkpoints / "step-000010").mkdir(parents=True)
        (checkpoints / "step-000010" / "attempt").write_text(str(attempt))
        good.mkdir(exist_ok=True)
        moved = quarantine_after(tmp_path, good)
        assert [p.name for p in moved] == ["diverged-step-000010" + ("" if attempt == 0 else f"-{attempt + 1}")]
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "diverged-step-000010", "diverged-step-000010-2", "diverged-step-000010-3", "step-000005"]  # fmt: skip
    assert [(checkpoints / f"diverged-step-000010{s}" / "attempt").read_text() for s in ("", "-2", "-3")] == \
        ["0", "1", "2"]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--run_dir", "''"], "run_dir is empty; name a directory for the run"),
        (["--run_dir", ""], "--run_dir is given an empty value; give one, or null to unset it"),
        (["--run_dir", "null"], "run_dir needs a value, got an empty one or null"),
        (["--lr", "nan"], "lr (nan) must be a finite number"),
        (["--min_lr", ".inf"], "min_lr (inf) must be a finite number"),
        (["--grad_clip", "nan"], "grad_clip (nan) must be a finite number"),
    ],
)
def test_settings_that_cannot_be_meant_are_refused_by_name(argv, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_args(argv)


def test_an_empty_config_file_is_refused_not_trained_as_the_defaults(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match=f"{config} is empty"):
        parse_args([str(config)])
    assert parse_args([]).run_dir == "runs/defaults"  # no file: the defaults, in a directory of their own


def test_a_run_lock_that_is_a_directory_or_fails_with_an_io_error_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "run" / "run.lock").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"run\.lock is a directory, not the run's lock file; remove it"):
        RunLock(tmp_path / "run").acquire()

    # A disk failing under the lock (EIO): injected at the flock call, the one place it can surface.
    def failing_flock(descriptor, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fcntl, "flock", failing_flock)
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match=r"cannot lock .*run\.lock \(Input/output error\); check the disk"):
        RunLock(tmp_path / "other").acquire()


@pytest.mark.parametrize("kind", ["file", "non-empty directory", "working directory"])
def test_a_tokenizer_destination_that_cannot_be_written_is_refused_before_the_corpus_is_read(tmp_path, kind):
    out = {"file": tmp_path / "taken.txt", "non-empty directory": tmp_path / "notes", "working directory": Path(".")}
    out = out[kind]
    if kind == "file":
        out.write_text("not a directory")
    elif kind == "non-empty directory":
        (out / "mine.txt").parent.mkdir()
        (out / "mine.txt").write_text("keep me")
    missing = TextSource(str(tmp_path / "no-corpus-here.jsonl"))  # reading it would fail with another message
    message = {"file": "is a file, not a directory", "non-empty directory": "is not empty",
               "working directory": "is the working directory"}[kind]  # fmt: skip
    with pytest.raises(ValueError, match=f"{message}.*choose another --out"):
        train_tokenizer(SourceTexts(missing, 200), 512, out)
    if kind == "non-empty directory":
        assert (out / "mine.txt").read_text() == "keep me"


def test_a_full_disk_at_the_final_export_is_one_line_and_leaves_nothing_half_written(mount):
    """A tiny GPT-2's weights are 13 MB; a 4 MB disk cannot hold them."""
    disk = mount("small", 4)
    with pytest.raises(StorageError, match=r"could not write the model in .*: the disk is full .* export"):
        save_with_model_card(ours_from(make_gpt2()), disk / "model", None, data="d", command="c")
    assert list(disk.iterdir()) == []


def test_a_tokenizer_not_numbered_in_merge_order_or_not_byte_level_is_refused_at_load(tiny_tokenizer, tmp_path):
    """The data is encoded by tiktoken (the lowest id merges first) and the exported model by tokenizers (the merge
    listed first). With the merged tokens numbered in reverse the two disagree (shown here with both libraries
    directly), so such a tokenizer.json is refused by name at load."""
    definition = json.loads((tiny_tokenizer / "tokenizer.json").read_text())
    vocab = definition["model"]["vocab"]
    merged = sorted((token for token, rank in vocab.items() if 256 <= rank < len(vocab)), key=vocab.get)
    for token, rank in zip(merged, sorted((vocab[t] for t in merged), reverse=True)):
        vocab[token] = rank
    edited = tmp_path / "edited"
    shutil.copytree(tiny_tokenizer, edited)
    (edited / "tokenizer.json").write_text(json.dumps(definition))
    chars = byte_of_char()
    pattern = definition["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    tiktoken_view = tiktoken.Encoding(
        "edited",
        pat_str=pattern,
        special_tokens={},
        mergeable_ranks={bytes(chars[c] for c in t): r for t, r in vocab.items()},
    )
    tokenizers_view = Tokenizer.from_file(str(edited / "tokenizer.json"))
    texts = make_documents(30, seed=3)
    differ = sum(tiktoken_view.encode_ordinary(t) != tokenizers_view.encode(t).ids for t in texts)
    assert differ > 10, differ
    with pytest.raises(ValueError, match="edited/tokenizer.json is not numbered in merge order"):
        load_tokenizer(str(edited))
    definition = json.loads((tiny_tokenizer / "tokenizer.json").read_text())
    definition["model"]["vocab"]["€uro"] = len(definition["model"]["vocab"])
    (edited / "tokenizer.json").write_text(json.dumps(definition))
    with pytest.raises(ValueError, match="token '€uro' .* holds '€', which is not a byte-level character"):
        load_tokenizer(str(edited))


def test_every_swap_of_two_merged_tokens_ids_is_refused_at_load(tiny_tokenizer, tmp_path):
    """Swapping two merged tokens' ids can change what tiktoken (the data) encodes while the probe text does not show
    it; each such edit is refused, the ones whose encodings differ (by both libraries, on 30 texts) among them."""
    original = json.loads((tiny_tokenizer / "tokenizer.json").read_text())
    merged = [token for token, rank in original["model"]["vocab"].items() if rank >= 256 and rank < 383]
    chars, texts = byte_of_char(), make_documents(30, seed=3)
    pattern = original["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    rng, differing = np.random.default_rng(0), 0
    edited = tmp_path / "edited"
    shutil.copytree(tiny_tokenizer, edited)
    for _ in range(40):
        first, second = rng.choice(merged, size=2, replace=False)
        definition = json.loads(json.dumps(original))
        vocab = definition["model"]["vocab"]
        vocab[first], vocab[second] = vocab[second], vocab[first]
        (edited / "tokenizer.json").write_text(json.dumps(definition))
        ranks = {bytes(chars[c] for c in t): r for t, r in vocab.items()}
        tiktoken_view = tiktoken.Encoding("edited", pat_str=pattern, special_tokens={}, mergeable_ranks=ranks)
        tokenizers_view = Tokenizer.from_file(str(edited / "tokenizer.json"))
        differing += any(tiktoken_view.encode_ordinary(t) != tokenizers_view.encode(t).ids for t in texts)
        with pytest.raises(ValueError, match="edited/tokenizer.json is not numbered in merge order"):
            load_tokenizer(str(edited))
    assert differing >= 1, differing  # swaps that would have trained on other ids than the export gives


def test_a_tokenizer_trained_on_random_bytes_warns_that_the_corpus_is_not_text(tmp_path, corpus):
    binary = tmp_path / "random.txt"  # a binary file under a text name: decoded with U+FFFD replacements
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    result = run_command("-m gpt_scratch.tokenizer", "train", "--data", str(binary), "--vocab_size", "300", "--out",
                         str(tmp_path / "tok"), "--val_docs", "0")  # fmt: skip
    assert "WARNING: " in result.stdout and "% of the corpus's characters are not text" in result.stdout
    text = run_command("-m gpt_scratch.tokenizer", "train", "--data", str(corpus), "--vocab_size", "300", "--out",
                       str(tmp_path / "text"), "--val_docs", "0")  # fmt: skip
    assert "trained 384 tokens" in text.stdout and "WARNING" not in text.stdout
