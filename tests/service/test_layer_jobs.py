"""A job with normalisation and dropout layers, end to end on SQLite and PostgreSQL:
submitted over HTTP (the OpenAPI outline of a spec admits every layer type), trained by
the worker's runner in this process, predicted from and exported to ONNX, whose
outputs equal the predict endpoint's."""
from __future__ import annotations

import json

import numpy as np
import pytest

from service.shared.settings import Settings
from worker.runner import run_job

SPEC = {"model": {"layers": [{"units": 16, "activation": "relu"}, {"type": "batchnorm", "momentum": 0.2},
                             {"type": "dropout", "rate": 0.25}, {"units": 8, "activation": "tanh"},
                             {"type": "layernorm"}, {"units": 3, "activation": "softmax"}]},
        "loss": "categorical_cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
        "data": {"dataset": "iris"}, "epochs": 4, "batch_size": 16, "checkpoint_every": 2, "seed": 2}


def test_a_job_with_every_layer_type_trains_predicts_and_exports(api_server):
    s = api_server.session("alice")
    r = s.post(api_server.api + "/jobs", json={"spec": SPEC})
    assert r.status_code == 201, r.text
    job = r.json()
    assert [la.get("type", "dense") for la in job["spec"]["model"]["layers"]] == [
        "dense", "batchnorm", "dropout", "dense", "layernorm", "dense"]
    doc = s.get(api_server.api + "/openapi.json").json()
    outline = json.dumps(doc["components"]["schemas"])
    assert all(f'"{field}": {{}}' in outline for field in ("type", "momentum", "eps", "rate", "units"))
    settings = Settings(database_url=api_server.database_url, broker_url="memory://",
                        artifact_dir=api_server.artifact_dir)
    assert run_job(job["id"], settings, "w1").startswith("succeeded")
    X = np.random.default_rng(0).normal(5.0, 2.0, size=(7, 4))
    predicted = s.post(api_server.api + f"/jobs/{job['id']}/predict", json={"inputs": X.tolist()})
    assert predicted.status_code == 200, predicted.text
    outputs = np.array(predicted.json()["outputs"])
    assert outputs.shape == (7, 3) and np.allclose(outputs.sum(axis=1), 1.0)
    ort = pytest.importorskip("onnxruntime")
    onnx = s.get(api_server.api + f"/jobs/{job['id']}/checkpoints/4/model.onnx")
    assert onnx.status_code == 200, onnx.text
    session = ort.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    (ran,) = session.run(None, {"input": X.astype(np.float32)})
    np.testing.assert_allclose(ran, outputs, rtol=1e-5, atol=1e-5)
