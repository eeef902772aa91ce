"""`trainyard train`: the offline mode of a job spec, run as a user runs it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nncore.job import Model

# every test runs `trainyard train` as a process, as a user runs it
pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


def trainyard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("trainyard") or f"{sys.executable} -m trainyard.cli"
    cmd = exe.split() + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or ROOT, timeout=300)


def test_json_mode_prints_an_object_per_epoch_and_a_summary(tmp_path):
    out = tmp_path / "run"
    proc = trainyard("train", "examples/xor.json", "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    epochs = [x for x in lines if x["event"] == "epoch"]
    summary = lines[-1]
    assert len(epochs) == 300 and [e["epoch"] for e in epochs[:3]] == [1, 2, 3]
    assert summary["event"] == "summary" and summary["status"] == "completed"
    assert summary["train"]["accuracy"] == 1.0
    ckpt = Path(summary["checkpoint"])
    assert ckpt.parent == out and ckpt.name == "epoch-00300.npz"
    model = Model.load(ckpt)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert model.predict_labels(X).tolist() == [0, 1, 1, 0]


@pytest.mark.slow
def test_digits_reaches_95_percent_validation_accuracy_from_the_spec_file(tmp_path):
    proc = trainyard("train", "examples/digits.json", "--json", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    best = max(json.loads(x)["val_accuracy"] for x in proc.stdout.splitlines()[:-1])
    assert best >= 0.95
    assert summary["validation"]["accuracy"] >= 0.95


def test_human_mode_prints_per_epoch_lines(tmp_path):
    proc = trainyard("train", "examples/xor.json", "--epochs", "3", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/3" in proc.stdout and "accuracy" in proc.stdout
    assert "completed" in proc.stdout and str(tmp_path) in proc.stdout


def test_resume_continues_where_the_checkpoint_left_off(tmp_path):
    first = trainyard("train", "examples/xor.json", "--json", "--epochs", "100", "--out", str(tmp_path / "a"))
    ckpt = json.loads(first.stdout.splitlines()[-1])["checkpoint"]
    resumed = trainyard("train", "examples/xor.json", "--json", "--resume", ckpt, "--out", str(tmp_path / "b"))
    straight = trainyard("train", "examples/xor.json", "--json", "--out", str(tmp_path / "c"))
    a = np.load(json.loads(resumed.stdout.splitlines()[-1])["checkpoint"])["params"]
    b = np.load(json.loads(straight.stdout.splitlines()[-1])["checkpoint"])["params"]
    assert resumed.stdout.splitlines()[0].startswith('{"event": "epoch", "epoch": 101')
    np.testing.assert_array_equal(a, b)


def test_a_bad_spec_gets_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"layers": [{"units": 3, "activation": "relux"}]}, "loss": "mse",
                               "data": {"dataset": "iris"}, "epochs": -1}))
    proc = trainyard("train", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.layers[0].activation: unknown activation 'relux'" in proc.stderr
    assert "epochs: must be >= 1, got -1" in proc.stderr
    proc = trainyard("train", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_data_mismatch_is_explained(tmp_path):
    spec = json.loads((ROOT / "examples/xor.json").read_text())
    spec["data"]["dataset"] = "iris"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    proc = trainyard("train", str(path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "input_dim is 2" in proc.stderr and "4 features" in proc.stderr


def test_divergence_exits_non_zero_with_the_reason(tmp_path):
    spec = json.loads((ROOT / "examples/xor.json").read_text())
    spec["optimizer"]["lr"] = 1e9
    spec["loss"] = "mse"
    spec["model"]["layers"][-1]["activation"] = "identity"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    proc = trainyard("train", str(path), "--json", "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "diverged" and "learning rate" in summary["reason"]


@pytest.mark.mpi
def test_world_size_2_prints_the_same_epochs_as_one_process(tmp_path):
    one = trainyard("train", "examples/digits.json", "--json", "--epochs", "3", "--out", str(tmp_path / "one"))
    two = trainyard("train", "examples/digits.json", "--json", "--epochs", "3", "--world-size", "2",
                    "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    strip = ("time", "samples_per_s")
    e1 = [{k: v for k, v in json.loads(x).items() if k not in strip} for x in one.stdout.splitlines()[:-1]]
    e2 = [{k: v for k, v in json.loads(x).items() if k not in strip} for x in two.stdout.splitlines()[:-1]]
    assert len(e2) == 3
    for a, b in zip(e1, e2, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], str):
                assert a[key] == b[key], key
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    summary = json.loads(two.stdout.splitlines()[-1])
    assert summary["status"] == "completed" and Path(summary["checkpoint"]).parent == tmp_path / "two"
    assert (tmp_path / "two" / "spec.json").exists()


@pytest.mark.mpi
def test_world_size_larger_than_the_batch_is_a_clear_cli_error(tmp_path):
    proc = trainyard("train", "examples/xor.json", "--world-size", "5", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "world size 5 is larger than a batch (4 samples)" in proc.stderr
