"""/api/v1/meta serves the job statuses (the one enum in service.store.status), the
version and the limits; the OpenAPI document enumerates the same statuses; the client
and the CLI use the enum rather than their own lists."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service.api import create_app
from service.shared.settings import Settings
from service.store.status import FINISHED, JobStatus


@pytest.fixture
def app(tmp_path: Path) -> Any:
    # no migrations: /meta reads nothing from the database
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                               broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
                               artifact_dir=tmp_path / "artifacts", max_predict_rows=123, user_quota_bytes=0,
                               job_memory_bytes=1 << 30,
                               spec_limits={"max_layers": 7, "max_units": 16384, "max_params": 1000,
                                            "max_epochs": 5, "max_batch_size": 10, "max_world_size": 2,
                                            "max_samples": 100}))


def test_meta_lists_every_status_in_order_with_its_finished_flag(app):
    resp = app.test_client().get("/api/v1/meta")  # no token: like /health, it is public
    assert resp.status_code == 200, resp.get_data(as_text=True)
    meta = resp.get_json()
    assert [s["name"] for s in meta["job_statuses"]] == [s.value for s in JobStatus]
    assert {s["name"]: s["finished"] for s in meta["job_statuses"]} == {s.value: s in FINISHED for s in JobStatus}
    assert all(s["description"] == JobStatus(s["name"]).description for s in meta["job_statuses"])
    assert meta["version"] == version("trainyard")
    assert meta["limits"] == {"max_layers": 7, "max_units": 16384, "max_params": 1000, "max_epochs": 5,
                              "max_batch_size": 10, "max_world_size": 2, "max_samples": 100,
                              "max_upload_bytes": 64 * 1024 * 1024, "max_predict_rows": 123,
                              "max_dataset_cells": 2**25, "job_memory_bytes": 1 << 30,
                              "job_checkpoint_bytes": 4 << 30, "user_quota_bytes": None}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_openapi_document_enumerates_the_same_statuses(app):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    members = [s.value for s in JobStatus]
    job = _resolve(spec, spec["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]
                   ["application/json"]["schema"])
    assert _resolve(spec, job["properties"]["status"])["enum"] == members
    meta = _resolve(spec, spec["paths"]["/api/v1/meta"]["get"]["responses"]["200"]["content"]
                    ["application/json"]["schema"])
    item = _resolve(spec, meta["properties"]["job_statuses"]["items"])
    assert _resolve(spec, item["properties"]["name"])["enum"] == members
    assert set(meta["properties"]["limits"]) and "503" not in spec["paths"]["/api/v1/meta"]["get"]["responses"]
    # the list filter is comma-separated, so a pattern: one built from the same members
    (status,) = [p for p in spec["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "status"]
    assert "|".join(members) in status["schema"]["anyOf"][0]["pattern"]


def test_client_and_cli_use_the_enum():
    import trainyard.client as client
    from trainyard.cli import main

    assert client.FINISHED is FINISHED
    result = CliRunner().invoke(main, ["jobs", "--status", "queued,paused", "--token", "t"])
    assert result.exit_code == 2 and "'paused' is not a job status" in result.output
    assert ", ".join(s.value for s in JobStatus) in result.output
    assert "--status STATUSES" in CliRunner().invoke(main, ["jobs", "--help"]).output


def test_meta_serves_the_series_catalog(app):
    from nncore.series import CATALOG

    series = app.test_client().get("/api/v1/meta").get_json()["series"]
    assert [s["name"] for s in series] == [s.name for s in CATALOG]
    loss = next(s for s in series if s["name"] == "val_loss")
    assert loss == {"name": "val_loss", "per": "epoch", "better": "min", "group": "loss",
                    "label": "loss (validation)", "key": "val_loss", "log_scale": True}
