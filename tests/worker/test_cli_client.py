"""The client verbs of the CLI against a real API and worker."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nncore.job import Model
from tests.conftest import trainyard_cmd
from trainyard.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).parents[2]


def run(server, *args, token="alice", env=None, cwd=None):
    env = {**server.env, "TRAINYARD_URL": server.url, "TRAINYARD_TOKEN": server.tokens[token], **(env or {})}
    return subprocess.run(trainyard_cmd() + list(args), env=env, capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_submit_watch_jobs_status_cancel(stack, tmp_path):
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    done = run(server, "submit", str(ROOT / "examples/xor.json"), "--watch")
    assert done.returncode == 0, done.stderr
    assert "submitted job" in done.stdout and "succeeded" in done.stdout.splitlines()[-1]
    job_id = int(done.stdout.split("submitted job ")[1].split()[0])
    listing = run(server, "jobs", "--json")
    assert job_id in [j["id"] for j in json.loads(listing.stdout)["items"]]
    shown = run(server, "status", str(job_id))
    assert shown.returncode == 0 and "succeeded" in shown.stdout
    again = run(server, "cancel", str(job_id))
    assert again.returncode == 1 and "already finished" in again.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"layers": [{"units": 0}]}, "loss": "mse", "data": {"dataset": "iris"}}))
    refused = run(server, "submit", str(bad))
    assert refused.returncode == 2 and "spec.model.layers[0].units: must be >= 1, got 0" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = run(server, "status", "999999")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    no_token = subprocess.run(trainyard_cmd() + ["jobs"], capture_output=True, text=True,
                              env={k: v for k, v in server.env.items() if k != "TRAINYARD_TOKEN"})
    assert no_token.returncode == 2 and "no API token" in no_token.stderr


# a small classifier with a validation split, trained in well under a second
IRIS = {"name": "iris-cli", "model": {"layers": [{"units": 16, "activation": "relu"},
                                                 {"units": 3, "activation": "softmax"}]},
        "loss": "categorical_cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
        "data": {"dataset": "iris", "validation_split": 0.2}, "batch_size": 16, "epochs": 12, "seed": 1,
        "checkpoint_every": 4}
EPOCH_SERIES = ["epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy", "epoch_lr", "epoch_samples_per_s"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def iris_job(stack, tmp_path_factory) -> int:
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    spec = tmp_path_factory.mktemp("spec") / "iris.json"
    spec.write_text(json.dumps(IRIS))
    done = run(server, "submit", str(spec), "--watch")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split("submitted job ")[1].split()[0])


def client(server) -> Client:
    return Client(server.url, server.tokens["alice"])


def assert_clean(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def iris_rows() -> np.ndarray:
    from nncore.datasets import load_dataset

    return load_dataset("iris").X[::15]


def test_jobs_table_shows_progress_and_the_validation_metric(stack, iris_job):
    server, _ = stack
    job = client(server).job(iris_job)
    line = next(line for line in run(server, "jobs").stdout.splitlines() if line.split()[0] == str(iris_job))
    assert "epoch 12/12" in line
    assert f"val_accuracy {job['result']['validation']['accuracy']:.4f}" in line


def test_metrics_table_has_a_row_per_epoch_with_the_api_values(stack, iris_job):
    server, _ = stack
    shown = run(server, "metrics", str(iris_job))
    assert shown.returncode == 0, shown.stderr
    header, *rows = [line.split() for line in shown.stdout.splitlines()]
    assert header == ["epoch", "step", *EPOCH_SERIES]
    assert [int(r[0]) for r in rows] == list(range(1, IRIS["epochs"] + 1))
    points = client(server).metrics(iris_job, EPOCH_SERIES)
    for name in EPOCH_SERIES:
        column = header.index(name)
        api = {p["epoch"]: (p["step"], p["value"]) for p in points if p["name"] == name}
        for r in rows:
            step, value = api[int(r[0])]
            assert int(r[1]) == step
            assert float(r[column].replace(",", "")) == pytest.approx(value, abs=0.6 if value >= 1e4 else 5e-5)
    as_json = run(server, "metrics", str(iris_job), "--name", "val_loss", "--json")
    assert json.loads(as_json.stdout) == client(server).metrics(iris_job, "val_loss")


def test_metrics_of_a_step_series_are_summarised(stack, iris_job):
    server, _ = stack
    shown = run(server, "metrics", str(iris_job), "--name", "loss")
    assert shown.returncode == 0, shown.stderr
    loss = client(server).metrics(iris_job, "loss")
    summary = shown.stdout.splitlines()[1].split()
    assert summary[:3] == ["loss", str(len(loss)), f"1-{loss[-1]['step']}"]
    tail = shown.stdout.split("last 10 steps:\n")[1].splitlines()
    assert [int(line.split()[0]) for line in tail[1:]] == [p["step"] for p in loss[-10:]]
    missing = run(server, "metrics", str(iris_job), "--name", "no_such_series")
    assert missing.returncode == 1 and "has no points of no_such_series; its series: " in missing.stderr


def test_metrics_plot_in_the_terminal(stack, iris_job):
    server, _ = stack
    env = {"COLUMNS": "90", "LINES": "30"}
    one = run(server, "metrics", str(iris_job), "--name", "loss", "--plot", env=env)
    assert one.returncode == 0, one.stderr
    assert_clean(one)
    lines = one.stdout.splitlines()
    assert lines[-1].split() == ["⠤⠤", "loss"]
    assert any("\u2801" <= ch <= "\u28ff" for ch in one.stdout), "drawn in braille"
    assert all(len(line) <= 90 for line in lines)
    values = [p["value"] for p in client(server).metrics(iris_job, "loss")]
    assert lines[0].split()[0] == f"{max(values):.4g}"
    two = run(server, "metrics", str(iris_job), "--name", "epoch_loss,val_loss", "--plot", env=env)
    assert "• epoch_loss" in two.stdout and "x val_loss" in two.stdout


def test_metrics_plot_to_a_png(stack, iris_job, tmp_path):
    server, _ = stack
    out = tmp_path / "curves.png"
    drawn = run(server, "metrics", str(iris_job), "--plot", "--out", str(out))
    assert drawn.returncode == 0, drawn.stderr
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1024
    # without matplotlib the command says what to install
    fake = tmp_path / "no-matplotlib" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    refused = run(server, "metrics", str(iris_job), "--out", str(tmp_path / "y.png"),
                  env={"PYTHONPATH": str(fake.parent)})
    assert refused.returncode == 1 and "install the plot extra: pip install 'trainyard[plot]'" in refused.stderr
    assert_clean(refused)
    assert not (tmp_path / "y.png").exists()


def test_checkpoints_list_the_api_epochs_and_mark_the_best(stack, iris_job):
    server, _ = stack
    listed = client(server).checkpoints(iris_job)
    shown = run(server, "checkpoints", str(iris_job))
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["epoch", "step", "size", "sha256", "val_loss", "created"]
    assert [int(r.split()[0]) for r in rows] == [c["epoch"] for c in listed] == [4, 8, 12]
    assert [r.split()[4] for r in rows] == [c["sha256"][:12] for c in listed]  # the size is "12.9 KiB"
    assert any(c["is_best"] for c in listed), "the test needs a checkpoint marked best"
    assert [r.endswith("best") for r in rows] == [c["is_best"] for c in listed]
    assert json.loads(run(server, "checkpoints", str(iris_job), "--json").stdout) == listed


def test_download_writes_the_listed_checkpoint(stack, iris_job, tmp_path):
    server, _ = stack
    listed = {c["epoch"]: c for c in client(server).checkpoints(iris_job)}
    got = run(server, "download", str(iris_job), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    path = tmp_path / got.stdout.strip()
    assert path.name == f"job-{iris_job}-epoch-12.npz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[12]["sha256"]
    assert Model.load(path).predict(iris_rows()).shape == (len(iris_rows()), 3)
    four = run(server, "download", str(iris_job), "--epoch", "4", "-o", str(tmp_path / "four.npz"))
    assert four.returncode == 0 and four.stdout.strip() == str(tmp_path / "four.npz")
    assert hashlib.sha256((tmp_path / "four.npz").read_bytes()).hexdigest() == listed[4]["sha256"]
    best = next(c for c in listed.values() if c["is_best"])
    got_best = run(server, "download", str(iris_job), "--best", "-o", str(tmp_path / "best.npz"))
    assert got_best.returncode == 0, got_best.stderr
    assert hashlib.sha256((tmp_path / "best.npz").read_bytes()).hexdigest() == best["sha256"]
    both = run(server, "download", str(iris_job), "--best", "--epoch", "4")
    assert both.returncode == 2 and "give one of them" in both.stderr
    missing = run(server, "download", str(iris_job), "--epoch", "999", cwd=tmp_path)
    assert missing.returncode == 1
    assert f"error: job {iris_job} has no checkpoint of epoch 999; its epochs: 4, 8, 12" in missing.stderr
    assert_clean(missing)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "four.npz", "best.npz"])


def test_datasets_upload_list_and_train_on_it(stack, tmp_path):
    server, _ = stack
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    csv = tmp_path / "blobs.csv"
    csv.write_text("x1,x2,x3,kind\n" + "".join(f"{a:.5f},{b:.5f},{c:.5f},{int(a > 0)}\n" for a, b, c in X))
    up = run(server, "datasets", "upload", str(csv), "--name", "blobs-cli", "--target", "kind")
    assert up.returncode == 0, up.stderr
    dataset_id = int(up.stdout.split()[1])
    assert f'dataset {dataset_id} "blobs-cli": 60 samples x 3 features, binary (2 classes)' in up.stdout
    assert f'"data": {{"dataset_id": {dataset_id}}}' in up.stdout
    listing = run(server, "datasets", "list").stdout.splitlines()
    assert [line.split()[:4] for line in listing if line.split()[0] == str(dataset_id)] == \
        [[str(dataset_id), "blobs-cli", "60", "3"]]
    assert dataset_id in [d["id"] for d in json.loads(run(server, "datasets", "list", "--json").stdout)["items"]]
    # the hint is a working spec
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": {"layers": [{"units": 4, "activation": "tanh"},
                                                     {"units": 1, "activation": "sigmoid"}]},
                                "loss": "binary_cross_entropy", "data": {"dataset_id": dataset_id}, "epochs": 3}))
    trained = run(server, "submit", str(spec), "--watch")
    assert trained.returncode == 0 and "succeeded" in trained.stdout, trained.stdout + trained.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n2,3\n")
    refused = run(server, "datasets", "upload", str(bad))
    assert refused.returncode == 2 and refused.stderr.startswith("error: ")
    assert_clean(refused)


def test_predict_prints_the_labels_of_the_checkpoint_model(stack, iris_job, tmp_path):
    server, _ = stack
    X = iris_rows()
    assert run(server, "download", str(iris_job), "-o", str(tmp_path / "m.npz")).returncode == 0
    expected = Model.load(tmp_path / "m.npz").predict_labels(X).tolist()
    assert len(set(expected)) > 1, "a test that tells the classes apart"
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c,d\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X))
    got = run(server, "predict", str(iris_job), str(csv))
    assert got.returncode == 0, got.stderr
    assert [int(line) for line in got.stdout.splitlines()] == expected
    np.save(tmp_path / "rows.npy", X)
    (tmp_path / "rows.json").write_text(json.dumps(X.tolist()))
    for name in ("rows.npy", "rows.json"):
        assert [int(v) for v in run(server, "predict", str(iris_job), str(tmp_path / name)).stdout.split()] == \
            expected
    env = {**server.env, "TRAINYARD_URL": server.url, "TRAINYARD_TOKEN": server.tokens["alice"]}
    piped = subprocess.run(trainyard_cmd() + ["predict", str(iris_job), "-"], input=csv.read_text(), env=env,
                           capture_output=True, text=True, timeout=60)
    assert [int(v) for v in piped.stdout.split()] == expected
    answer = json.loads(run(server, "predict", str(iris_job), str(csv), "--checkpoint", "4", "--json").stdout)
    assert answer["checkpoint"]["epoch"] == 4 and len(answer["outputs"]) == len(X)
    np.testing.assert_allclose(answer["outputs"], client(server).predict(iris_job, X, 4)["outputs"])

    narrow = tmp_path / "narrow.csv"
    narrow.write_text("".join(",".join(repr(float(v)) for v in row[:3]) + "\n" for row in X[:2]))
    refused = run(server, "predict", str(iris_job), str(narrow))
    assert refused.returncode == 2
    assert "inputs[0]: has 3 values but the model takes 4 features" in refused.stderr
    assert_clean(refused)
    words = tmp_path / "words.csv"
    words.write_text("a,b,c,d\n1,2,3,4\n1,two,3,4\n")
    refused = run(server, "predict", str(iris_job), str(words))
    assert refused.returncode == 2 and f"{words} line 3: 'two' is not a number" in refused.stderr
    # NaN and Infinity parse as floats but are no input for a model, nor valid JSON
    for fmt, text in (("csv", "1,2,3,4\n5,nan,6,7\n"), ("json", "[[1, 2, 3, 4], [1, Infinity, 3, 4]]")):
        holes = tmp_path / f"holes.{fmt}"
        holes.write_text(text)
        refused = run(server, "predict", str(iris_job), str(holes))
        assert refused.returncode == 2 and "row 2:" in refused.stderr and "not a finite number" in refused.stderr
        assert_clean(refused)
    spec = tmp_path / "nan-spec.json"
    spec.write_text(json.dumps({**IRIS, "optimizer": {"name": "sgd", "lr": float("nan")}}))
    refused = run(server, "submit", str(spec))
    assert refused.returncode == 2 and "NaN or Infinity" in refused.stderr
    assert_clean(refused)


def test_watch_on_a_terminal_draws_epoch_loss_and_eta(stack, tmp_path):
    import os
    import pty
    import re
    import select

    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    # one sample per step: a few seconds of training, long enough for several frames
    spec = {"name": "digits-sgd", "model": {"input_dim": 64, "layers": [{"units": 32, "activation": "relu"},
                                                                        {"units": 10, "activation": "softmax"}]},
            "loss": "categorical_cross_entropy", "optimizer": {"name": "sgd", "lr": 0.01},
            "data": {"dataset": "digits", "validation_split": 0.2, "standardize": True},
            "batch_size": 1, "epochs": 12, "seed": 1}
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(spec))
    primary, secondary = pty.openpty()
    env = {**server.env, "TRAINYARD_URL": server.url, "TRAINYARD_TOKEN": server.tokens["alice"]}
    proc = subprocess.Popen(trainyard_cmd() + ["submit", str(path), "--watch"], env=env, stdout=secondary,
                            stderr=secondary)
    os.close(secondary)
    out = b""
    while select.select([primary], [], [], 120)[0]:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        out += chunk
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    text = out.decode()
    frames = [f for f in re.split(r"[\r\n]", text) if "[" in f and "epoch" in f]
    drawn = [f for f in frames if re.search(r"epoch \d+/12 loss \d+\.\d{4} val_loss \d+\.\d{4} "
                                            r"val_accuracy \d\.\d{4} eta \d+:\d\d", f)]
    assert drawn, text
    assert "succeeded" in text.strip().splitlines()[-1]
