"""--report_to: every tracker gets plain hyper-parameters and the logged scalars, read back from its own files."""

import json
import sqlite3
import struct
from pathlib import Path

import pytest
from train_runs import run_train, trainer_state

STEPS = ["--max_steps", "5", "--tokens_per_step", "128", "--hellaswag_data", "null", "--checkpoint_interval", "1000"]


def assert_matches_the_run(run_dir: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    history = trainer_state(run_dir)["history"]
    (step, logged), *_ = scalars["train/loss"]
    assert step == 5 and logged == pytest.approx(dict(history["train_loss"])[5], rel=1e-6)
    evaluated = dict(history["val_loss"])
    assert [step for step, _ in scalars["eval/val_loss"]][:2] == [0, 5]  # before the first step, then every 5
    for step, logged in scalars["eval/val_loss"]:
        assert logged == pytest.approx(evaluated[step], rel=1e-6), step
    for step, logged in scalars["eval/val_bpb"]:  # bits per byte: what compares runs with other tokenizers
        assert logged == pytest.approx(dict(history["val_bpb"])[step], rel=1e-6), step


def test_tensorboard(tmp_path, corpus):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    run_train(run_dir, "--data", str(corpus), *STEPS, "--report_to", "tensorboard")
    event_dirs = sorted({path.parent for path in run_dir.rglob("events.out.tfevents.*")})
    assert event_dirs, "no TensorBoard event file written"
    scalars = {}
    for directory in event_dirs:
        events = EventAccumulator(str(directory)).Reload()
        for tag in events.Tags()["scalars"]:
            scalars[tag] = [(event.step, event.value) for event in events.Scalars(tag)]
    assert_matches_the_run(run_dir, scalars)


def wandb_records(path: Path):
    """The protobuf records of a ``run-<id>.wandb`` file: a ':W&B' header, then LevelDB-log framing (32 KiB blocks
    of records with a 7-byte header: crc32, length, type full/first/middle/last). wandb ships no Python reader."""
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    position, pending = header, b""
    while position + header <= len(data):
        if block - position % block < header:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + header])
        pending += data[position + header : position + header + length]
        position += header + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline(tmp_path, corpus):
    run_dir = tmp_path / "run"
    run_train(run_dir, "--data", str(corpus), *STEPS, "--report_to", "wandb", env={"WANDB_MODE": "offline"})
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")  # in the run directory, not the working directory
    scalars, config = {}, {}
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for key, value in row.items():
                scalars.setdefault(key, []).append((row["_step"], value))
        elif record.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert_matches_the_run(run_dir, scalars)
    assert config["lr"] == 3e-3 and config["max_steps"] == 5 and config["hellaswag_data"] == "null"


def test_trackio_local(tmp_path, corpus):
    run_dir, store = tmp_path / "run", tmp_path / "trackio"
    run_train(run_dir, "--data", str(corpus), *STEPS, "--report_to", "trackio", env={"TRACKIO_DIR": str(store)})
    database = sqlite3.connect(store / f"{run_dir.name}.db")  # one database per project: the run directory's name
    scalars = {}
    for step, metrics in database.execute("SELECT step, metrics FROM metrics ORDER BY id"):
        for key, value in json.loads(metrics).items():
            scalars.setdefault(key, []).append((step, value))
    assert_matches_the_run(run_dir, scalars)
    ((config,),) = database.execute("SELECT config FROM configs").fetchall()
    config = json.loads(config)
    assert config["lr"] == 3e-3 and config["max_steps"] == 5
