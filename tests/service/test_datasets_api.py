"""Dataset uploads (multipart, through requests) against the API in this process, on a
fresh SQLite and a fresh PostgreSQL database: CSV and NPZ are checked by nncore's loader
(never unpickled), stored, listed, used by jobs, deleted, and seen only by their owner
(and administrators). One test sends an oversized upload to a real gunicorn server."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.nncore.test_datasets import MiB, npy_header, npz_bomb, write_zip

UPLOAD_LIMIT = 200_000
# read by the api_server (in-process) and live_api_server (gunicorn) fixtures: a small
# limit makes a 413 cheap to provoke
API_SETTINGS = {"max_upload_bytes": UPLOAD_LIMIT}
API_SERVER_ENV = {"TRAINYARD_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
PROBLEM = "application/problem+json"

IRIS_LIKE = (b"sepal,petal,species,width\n"
             b"5.1,1.4,setosa,0.2\n"
             b"7.0,4.7,versicolor,1.4\n"
             b"6.3,6.0,virginica,2.5\n"
             b"4.9,1.4,setosa,0.2\n"
             b"6.4,4.5,versicolor,1.5\n"
             b"5.8,5.1,virginica,1.9\n")
XOR_CSV = b"x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n"


def upload(server, user: str, filename: str, content: bytes, **form: str):
    return server.session(user).post(server.api + "/datasets", files={"file": (filename, content)}, data=form)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def assert_problem(r, status: int, path: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    body = r.json()
    assert body["status"] == status
    if path is not None:
        assert [e["path"] for e in body["errors"]] == [path], body
    return body


def stored_files(server) -> list[str]:
    folder = server.artifact_dir / "datasets"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_csv_upload_with_header_and_target_by_name_then_get_list_delete(api_server):
    s = api_server.session("alice")
    r = upload(api_server, "alice", "iris-like.csv", IRIS_LIKE, target="species", name="flowers")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert r.headers["Location"].endswith(f"/api/v1/datasets/{ds['id']}")
    assert {k: ds[k] for k in ("name", "owner", "filename", "format", "n_samples", "n_features", "task",
                               "n_classes", "target", "size_bytes", "sha256")} == {
        "name": "flowers", "owner": "alice", "filename": "iris-like.csv", "format": "csv", "n_samples": 6,
        "n_features": 3, "task": "multiclass", "n_classes": 3, "target": "species", "size_bytes": len(IRIS_LIKE),
        "sha256": hashlib.sha256(IRIS_LIKE).hexdigest()}
    stored = api_server.artifact_dir / "datasets" / f"{ds['id']}.csv"
    assert stored.read_bytes() == IRIS_LIKE
    assert s.get(api_server.api + f"/datasets/{ds['id']}").json() == ds

    second = upload(api_server, "alice", "xor.csv", XOR_CSV).json()
    assert second["name"] == "xor" and second["target"] is None and second["task"] == "binary"
    first_page = s.get(api_server.api + "/datasets", params={"limit": 1}).json()
    assert [d["id"] for d in first_page["items"]] == [second["id"]]
    rest = s.get(api_server.api + "/datasets", params={"limit": 200, "page_token": first_page["next_page_token"]})
    assert ds["id"] in [d["id"] for d in rest.json()["items"]]

    assert s.delete(api_server.api + f"/datasets/{ds['id']}").status_code == 204
    assert not stored.exists()
    assert_problem(s.get(api_server.api + f"/datasets/{ds['id']}"), 404)
    assert_problem(s.delete(api_server.api + f"/datasets/{ds['id']}"), 404)


def test_npz_upload_and_target_refused_for_npz(api_server, tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    content = (tmp_path / "reg.npz").read_bytes()
    r = upload(api_server, "alice", "reg.npz", content)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert (ds["format"], ds["n_samples"], ds["n_features"], ds["task"], ds["n_classes"]) == \
        ("npz", 30, 4, "regression", None)
    assert (api_server.artifact_dir / "datasets" / f"{ds['id']}.npz").read_bytes() == content
    assert_problem(upload(api_server, "alice", "reg.npz", content, target="0"), 422, "target")


class _Payload:
    """Unpickling this creates a directory: the proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_npz_with_an_object_array_is_refused_without_being_unpickled(api_server, tmp_path):
    marker = tmp_path / "unpickled"
    X = np.empty((2, 1), dtype=object)
    X[0, 0], X[1, 0] = _Payload(marker), _Payload(marker)
    before = stored_files(api_server)
    r = upload(api_server, "alice", "evil.npz", npz_bytes(X=X, y=np.array([0, 1])))
    body = assert_problem(r, 422, "file")
    assert "Python objects" in body["errors"][0]["message"]
    assert not marker.exists()
    # a file that is not NPZ at all would make np.load fall back to pickle: refused too
    import pickle

    r = upload(api_server, "alice", "pickle.npz", pickle.dumps(_Payload(marker)))
    assert_problem(r, 422, "file")
    assert not marker.exists()
    assert stored_files(api_server) == before


@pytest.mark.parametrize("content, where, what", [
    (b"a,b,y\n1,2,0\n3,x,1\n4,5,0\n", "row 3, column 2 ('b')", "'x', which is not a number"),
    (b"a,b,y\n1,2,0\n3,4,1\n4,nan,0\n", "row 4, column 2 ('b')", "NaN and infinite values are not allowed"),
    (b"1,2,0\n3,4,1\n,5,0\n", "row 3, column 1", "is empty"),
])
def test_csv_with_a_bad_cell_is_a_422_naming_row_and_column(api_server, content, where, what):
    before = stored_files(api_server)
    body = assert_problem(upload(api_server, "alice", "cells.csv", content), 422, "file")
    message = body["errors"][0]["message"]
    assert where in message and what in message and "'cells.csv'" in message
    # the client sees its own file name, never the server's paths
    assert str(api_server.artifact_dir) not in json.dumps(body)
    assert stored_files(api_server) == before


def test_wrong_extension_missing_file_bad_target_and_empty_file(api_server):
    s = api_server.session("alice")
    body = assert_problem(upload(api_server, "alice", "data.txt", XOR_CSV), 422, "file")
    assert ".csv or .npz" in body["errors"][0]["message"]
    assert_problem(s.post(api_server.api + "/datasets", data={"name": "no file"}), 422, "file")
    assert_problem(s.post(api_server.api + "/datasets", json={"file": "x.csv"}), 422, "file")
    body = assert_problem(upload(api_server, "alice", "xor.csv", XOR_CSV, target="label"), 422, "target")
    assert "no column named 'label'" in body["errors"][0]["message"]
    assert_problem(upload(api_server, "alice", "xor.csv", XOR_CSV, target="7"), 422, "target")
    assert_problem(upload(api_server, "alice", "empty.csv", b""), 422, "file")
    assert_problem(upload(api_server, "alice", "xor.csv", XOR_CSV, colour="red"), 422, "colour")


def _oversized_upload_is_refused(server) -> None:
    big = b"x1,x2,y\n" + b"0.123456,0.654321,1\n" * (UPLOAD_LIMIT // 20 + 10)
    assert len(big) > UPLOAD_LIMIT
    before = stored_files(server)
    body = assert_problem(upload(server, "alice", "big.csv", big), 413)
    assert str(UPLOAD_LIMIT) in body["detail"]
    assert stored_files(server) == before
    assert upload(server, "alice", "xor.csv", XOR_CSV).status_code == 201


def test_an_oversized_upload_is_a_413_problem_document(api_server):
    _oversized_upload_is_refused(api_server)


@pytest.mark.integration
def test_gunicorn_answers_an_oversized_upload_with_the_413_and_keeps_serving(live_api_server):
    # gunicorn closes a connection with more than 64 KiB unread: the 413 must still
    # arrive, and the next upload (on a new connection) succeed
    _oversized_upload_is_refused(live_api_server)


def xor_job(dataset_id: int) -> dict:
    return {**XOR, "epochs": 5, "data": {"dataset_id": dataset_id, "validation_split": 0.0, "standardize": False,
                                         "stratify": False}}


def test_a_job_trains_on_an_uploaded_dataset_and_holds_it_until_it_finishes(api_server):
    from nncore.job import Job
    from service.store.datasets import dataset_path
    from service.store.db import make_engine, make_sessionmaker

    alice, bob = api_server.session("alice"), api_server.session("bob")
    ds = upload(api_server, "alice", "xor.csv", XOR_CSV).json()
    r = alice.post(api_server.api + "/jobs", json={"spec": xor_job(ds["id"])})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["dataset_id"] == ds["id"] and job["spec"]["data"]["dataset_id"] == ds["id"]

    # what the worker will do: resolve the id to the stored file and train on it
    engine = make_engine(api_server.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            path = dataset_path(session, ds["id"])
    finally:
        engine.dispose()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ds["sha256"]
    trained = Job(job["spec"], data_path=str(path))
    assert trained.data.n_features == 2 and trained.data.train.n == 4
    assert trained.run().epochs == 5

    # another user cannot name it, even knowing its id
    r = bob.post(api_server.api + "/jobs", json={"spec": xor_job(ds["id"])})
    assert_problem(r, 422, "spec.data.dataset_id")
    assert "upload one" in r.json()["errors"][0]["message"]

    body = assert_problem(alice.delete(api_server.api + f"/datasets/{ds['id']}"), 409)
    assert str(job["id"]) in body["detail"]
    assert alice.get(api_server.api + f"/datasets/{ds['id']}").status_code == 200
    assert alice.post(api_server.api + f"/jobs/{job['id']}/cancel").status_code == 202
    assert alice.delete(api_server.api + f"/datasets/{ds['id']}").status_code == 204
    assert alice.get(api_server.api + f"/jobs/{job['id']}").json()["dataset_id"] is None


def test_only_the_owner_and_administrators_see_a_dataset(api_server):
    alice, bob, root = (api_server.session(u) for u in ("alice", "bob", "root"))
    ds = upload(api_server, "alice", "xor.csv", XOR_CSV).json()
    url = api_server.api + f"/datasets/{ds['id']}"
    assert_problem(bob.get(url), 404)
    assert_problem(bob.delete(url), 404)
    assert ds["id"] not in [d["id"] for d in bob.get(api_server.api + "/datasets").json()["items"]]
    assert_problem(api_server.session(None).get(url), 401)
    assert root.get(url).json()["owner"] == "alice"
    assert ds["id"] in [d["id"] for d in root.get(api_server.api + "/datasets?limit=200").json()["items"]]
    assert alice.get(url).status_code == 200
    assert root.delete(url).status_code == 204
    assert_problem(alice.get(url), 404)


def test_the_openapi_document_shows_the_multipart_upload(api_server):
    spec = api_server.session(None).get(api_server.api + "/openapi.json").json()
    op = spec["paths"]["/api/v1/datasets"]["post"]
    schema = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    upload_schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert upload_schema["properties"]["file"] == {**upload_schema["properties"]["file"], "type": "string",
                                                   "format": "binary"}
    assert upload_schema["required"] == ["file"]
    assert {"201", "401", "413", "422"} <= set(op["responses"])
    assert set(spec["paths"]["/api/v1/datasets/{dataset_id}"]["delete"]["responses"]) >= {"204", "404", "409"}


# -- uploads past the size limits: refused before they cost the API memory ----------------

def refused_without_a_trace(server, filename: str, content: bytes) -> str:
    """Upload ``content``: a 422 about the file, and no row or file left behind; the message."""
    s = server.session("alice")
    before, listed = stored_files(server), s.get(server.api + "/datasets").json()["items"]
    body = assert_problem(upload(server, "alice", filename, content), 422, "file")
    assert stored_files(server) == before
    assert s.get(server.api + "/datasets").json()["items"] == listed
    return body["errors"][0]["message"]


def test_an_npz_bomb_is_a_422_before_it_is_inflated(api_server, tmp_path):
    # 128 MiB of zeros in about 130 kB, under this module's upload limit
    bomb = npz_bomb(tmp_path / "bomb.npz", rows=4 * MiB, cols=32, descr="|i1").read_bytes()
    assert len(bomb) < UPLOAD_LIMIT
    assert refused_without_a_trace(api_server, "bomb.npz", bomb) == (
        "NPZ file 'bomb.npz': array 'X' holds 134,217,728 values (4,194,304 rows of 32 features); the limit is "
        "33,554,432 values")


def test_an_npy_header_declaring_8_tib_is_a_422(api_server, tmp_path):
    content = write_zip(tmp_path / "huge.npz", {"X.npy": npy_header((2**40, 1), "<f8"),
                                                "y.npy": npy_header((2**40,), "<f8")}).read_bytes()
    assert refused_without_a_trace(api_server, "huge.npz", content) == (
        "NPZ file 'huge.npz': array 'X' has 1,099,511,627,776 rows (shape (1099511627776, 1)); the limit is "
        "10,000,000 rows")
    # and an archive member that is no array at all is a 422 too, not a 500
    content = write_zip(tmp_path / "odd.npz", {"X.npy": b"not an array", "y.npy": npy_header((1,), "<f8")}).read_bytes()
    assert "'X.npy' is not a NumPy .npy array" in refused_without_a_trace(api_server, "odd.npz", content)


def test_a_csv_of_100000_columns_is_a_422(api_server):
    content = ("," * 99_999 + "1\n").encode()
    assert refused_without_a_trace(api_server, "wide.csv", content) == (
        "CSV file 'wide.csv' has more than 16,384 feature columns (row 1 has 100,000 columns); the limit is 16,384 "
        "feature columns and the target")


def test_the_limits_come_from_the_server_settings(api_server, tmp_path):
    state = api_server.app.extensions["trainyard"]
    state.settings = dataclasses.replace(state.settings, max_dataset_cells=100, spec_limits={
        **state.settings.spec_limits, "max_units": 4, "max_samples": 50})

    def rows(n: int, cols: int) -> bytes:
        return "".join(",".join(str((i + j) % 2) for j in range(cols)) + "\n" for i in range(n)).encode()

    assert "the limit is 4 feature columns" in refused_without_a_trace(api_server, "f.csv", rows(2, 6))
    assert "more than 50 rows of data (row 51 is one too many); the limit is 50" in refused_without_a_trace(
        api_server, "r.csv", rows(51, 2))
    assert "the limit is 100 cells" in refused_without_a_trace(api_server, "c.csv", rows(40, 3))
    np.savez(tmp_path / "v.npz", X=np.zeros((30, 4)), y=np.arange(30) % 2)
    assert "the limit is 100 values" in refused_without_a_trace(api_server, "v.npz",
                                                                (tmp_path / "v.npz").read_bytes())
    assert upload(api_server, "alice", "ok.csv", rows(33, 3)).status_code == 201


def test_max_dataset_cells_is_read_from_the_environment(monkeypatch):
    from service.shared.settings import Settings

    monkeypatch.delenv("TRAINYARD_MAX_DATASET_CELLS", raising=False)
    assert Settings.from_env().max_dataset_cells == 2**25
    monkeypatch.setenv("TRAINYARD_MAX_DATASET_CELLS", "1000")
    assert Settings.from_env().max_dataset_cells == 1000
    monkeypatch.setenv("TRAINYARD_MAX_DATASET_CELLS", "0")
    with pytest.raises(ValueError, match=r"TRAINYARD_MAX_DATASET_CELLS must be a positive whole number of values, "
                                         r"got '0'"):
        Settings.from_env()
