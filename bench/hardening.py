"""The hardening issue's attacks, replayed against a real ``trainyard api`` (gunicorn).

For each request: the answer (status, the first field named), the time it took and how
much the API's worker processes grew (peak resident memory, VmHWM, of the gunicorn
workers, before and after). Before the fixes, the bombs and bypasses were 201s costing
up to 1.9 GB and seconds of CPU; the numbers this prints are what they cost now.

Usage:  python bench/hardening.py [--postgres]
"""
from __future__ import annotations

import argparse
import io
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from tests.conftest import start_api_server, stop_api_server  # noqa: E402
from tests.nncore.test_datasets import npy_header, npz_bomb, write_zip  # noqa: E402

XOR = json.loads((ROOT / "examples/xor.json").read_text())
MiB = 1 << 20


def worker_peak_kib(master_pid: int) -> int:
    """Sum of the peak resident memory of the gunicorn master's children."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(master_pid):
            total += int(fields.get("VmHWM", "0 kB").split()[0])
    return total


def spec(layers: list[dict], dataset: str = "digits", **over) -> dict:
    return {**XOR, "loss": "categorical_cross_entropy", "data": {"dataset": dataset},
            "model": {"layers": [*layers, {"units": 10, "activation": "softmax"}]}, **over}


def raw(url: str, payload: bytes, timeout: float = 30) -> tuple[int, str]:
    host, port = url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.split(b"\r\n\r\n", 1)[-1][:200].decode(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", action="store_true", help="also against a throwaway PostgreSQL cluster")
    args = ap.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for kind in kinds:
        run(kind)


def run(kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg = None
        if kind == "postgresql":
            from tests.conftest import PostgresCluster

            pg = PostgresCluster().init()
        try:
            (tmp / "srv").mkdir()
            server = start_api_server(kind, tmp / "srv", pg.url if pg else None)
            try:
                attack(server, tmp, kind)
            finally:
                stop_api_server(server)
        finally:
            if pg:
                pg.remove()


def attack(server, tmp: Path, kind: str) -> None:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {server.tokens['alice']}"
    api = server.api
    bomb = npz_bomb(tmp / "bomb.npz", rows=64 * MiB // 8 // 8 * 8)  # 512 MiB of float64 zeros
    huge = write_zip(tmp / "huge.npz", {"X.npy": npy_header((1 << 40, 1), "<f8"), "y.npy": npy_header((4,), "<f8")})
    not_array = write_zip(tmp / "text.npz", {"X.npy": b"this is not an array", "y.npy": b"nor this"})
    long_line = ",".join(["1"] * 5_000_000).encode() + b"\n"
    wide = b"\n".join(b",".join(b"1" for _ in range(100_001)) for _ in range(10)) + b"\n"
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, X=rng.normal(size=(20, 4000)), y=rng.integers(0, 2, 20))
    wide_npz = buf.getvalue()

    def upload(filename: str, content: bytes, **form: str) -> Callable[[], requests.Response]:
        return lambda: s.post(api + "/datasets", files={"file": (filename, content)}, data=form)

    r = s.post(api + "/datasets", files={"file": ("wide.npz", wide_npz)})
    wide_spec = spec([{"units": 16384, "activation": "relu"}])
    wide_spec["data"] = {"dataset_id": r.json()["id"]}
    s.post(api + "/jobs", json={"spec": XOR})  # job 1, for the metrics route

    def job(doc: dict) -> Callable[[], requests.Response]:
        return lambda: s.post(api + "/jobs", json={"spec": doc})

    memory = spec([{"units": 16384, "activation": "relu"}], dataset="moons", batch_size="full",
                  loss="binary_cross_entropy")
    memory["data"]["n_samples"] = 10_000_000
    memory["model"]["layers"][-1] = {"units": 1, "activation": "sigmoid"}
    storage = spec([{"units": 4096, "activation": "relu"}] * 3, checkpoint_every=1, epochs=100_000,
                   retention={"keep_last": 0})
    cases: list[tuple[str, Callable[[], object]]] = [
        (f"NPZ bomb ({bomb.stat().st_size / MiB:.1f} MiB inflating to 512 MiB)",
         upload("bomb.npz", bomb.read_bytes())),
        ("NPZ whose .npy header declares 8 TiB", upload("huge.npz", huge.read_bytes())),
        ("NPZ member that is not an array", upload("text.npz", not_array.read_bytes())),
        ("CSV: one 10 MB line of 5 M features", upload("long.csv", long_line)),
        ("CSV: 100,000 feature columns", upload("wide.csv", wide)),
        ("NUL in a dataset name", upload("d.csv", b"a,b\n1,0\n2,1\n", name="x\x00y")),
        ("NUL in a CSV target", upload("d.csv", b"a,b\n1,0\n2,1\n", target="b\x00")),
        ("NUL in an upload file name", upload("d\x00.csv", b"a,b\n1,0\n2,1\n")),
        ("NUL in a metrics name filter", lambda: s.get(api + "/jobs/1/metrics?name=loss%00")),
        ("NUL in a jobs page token", lambda: s.get(api + "/jobs?page_token=a%00b")),
        ("10 x 16,384-unit layers, no input_dim", job(spec([{"units": 16384, "activation": "relu"}] * 10))),
        ("16,384 units on a 4,000-feature upload", job(wide_spec)),
        ("full batch of 10^7 samples, 16,384 units", job(memory)),
        ("every checkpoint of 36 M params, 10^5 epochs", job(storage)),
        ("finite differences, 7,510 params, no input_dim",
         job(spec([{"units": 100, "activation": "tanh"}], gradient="finite_difference"))),
        ("8 MiB request line", lambda: raw(server.url, b"GET /api/v1/health?" + b"a" * (8 * MiB)
                                          + b" HTTP/1.1\r\nHost: x\r\n\r\n")),
    ]

    print(f"\n{kind}: trainyard api, 2 gunicorn workers")
    print(f"{'request':<50} {'answer':<44} {'ms':>7} {'API +MiB':>9}")
    master = server.proc.pid
    for name, call in cases:
        before = worker_peak_kib(master)
        t = time.perf_counter()
        out = call()
        ms = (time.perf_counter() - t) * 1000
        grew = (worker_peak_kib(master) - before) / 1024
        if isinstance(out, requests.Response):
            try:
                body = out.json()
                where = (body.get("errors") or [{}])[0].get("path", "")
                answer = f"{out.status_code} {where}"
            except ValueError:
                answer = f"{out.status_code}"
        else:
            status, text = out
            answer = f"{status} {json.loads(text).get('type', '').rsplit('/', 1)[-1] if text.startswith('{') else ''}"
        print(f"{name:<50} {answer:<44} {ms:7.0f} {grew:9.1f}")


if __name__ == "__main__":
    main()
