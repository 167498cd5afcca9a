"""Checkpoints survive a power loss: every file and the directory are fsynced before the rename that makes the
checkpoint visible, and the parent directory after it (so the rename itself is on disk)."""

import os

import torch
from accelerate import Accelerator

import gpt_scratch.atomic as atomic
from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.checkpoint import save_checkpoint


def test_files_and_directories_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, destination):
        events.append(("rename", str(source), str(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    accelerator = Accelerator(cpu=True)
    model = GPTScratchForCausalLM(GPTScratchConfig(n_layer=1, n_head=2, n_embd=32, n_positions=32, vocab_size=100))
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    final = save_checkpoint(accelerator, tmp_path, 7, {"position": 3}, {"history": {}}, keep=2)

    (rename,) = [e for e in events if e[0] == "rename"]
    assert rename[2] == str(final)
    staging = rename[1]
    before = {path for kind, path, *_ in events[: events.index(rename)] if kind == "fsync"}
    written = {os.path.join(staging, name) for name in os.listdir(final)}
    assert written and written <= before, written - before  # every file's data, before the name says "complete"
    assert staging in before  # the staging directory's entries too
    after = [path for kind, path, *_ in events[events.index(rename) + 1 :] if kind == "fsync"]
    assert str(final.parent) in after  # and the rename itself
