"""What the service adds to training: the same spec trained directly with nncore and
through the API + a worker (SQLite, embedded broker, one worker process), for a short
and a longer job.

Prints wall time of the training itself (direct ``Job.run()`` vs the same call inside
the worker, which writes
every step's loss/lr/grad-norm/samples-per-second and every epoch's metrics to SQL and
records checkpoints), the overhead in percent, the queue latency (submit -> running,
from the job row) and the metric points written. ``worker s`` is training with the
metrics writer thread beside it; ``flush ms`` the last write the job then waits for.

Usage:  python bench/service_overhead.py
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datetime import datetime  # noqa: E402

from sqlalchemy import create_engine  # noqa: E402

from nncore.job import Job  # noqa: E402
from service.store.metrics import point_count  # noqa: E402
from tests.conftest import start_api_server, stop_api_server, trainyard_cmd  # noqa: E402

DIGITS = json.loads((ROOT / "examples/digits.json").read_text())


def spec(epochs: int, batch: int) -> dict:
    s = copy.deepcopy(DIGITS)
    s.pop("early_stopping")
    s.update(epochs=epochs, batch_size=batch, checkpoint_every=max(1, epochs // 5))
    s["schedule"] = {"name": "cosine", "t_max": epochs}
    s["optimizer"]["lr"] = 0.01
    return s


JOBS = {"short": spec(10, 64), "longer": spec(60, 32)}


def direct_seconds(doc: dict, repeat: int = 3) -> float:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # as the worker runs jobs
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            job = Job(doc, out_dir=out)
            t = time.perf_counter()
            job.run()
            best = min(best, time.perf_counter() - t)
    return best


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ty-bench-"))
    server = start_api_server("sqlite", tmp, None)
    log = open(tmp / "worker.log", "wb")
    worker = subprocess.Popen(trainyard_cmd() + ["worker"], env=server.env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    s = server.session("alice")
    time.sleep(3)  # the worker connects to the broker
    print(f"{'job':<8}{'steps':>7}{'direct s':>10}{'worker s':>10}{'overhead':>10}{'flush ms':>10}"
          f"{'with it':>10}{'submit->running ms':>20}{'points':>13}")
    try:
        for name, doc in JOBS.items():
            direct = direct_seconds(doc)
            runs = []
            for _ in range(3):
                job_id = s.post(server.api + "/jobs", json={"spec": doc}).json()["id"]
                while (job := s.get(f"{server.api}/jobs/{job_id}").json())["status"] in ("queued", "running"):
                    time.sleep(0.5)  # a light poll: the API shares the cores with the worker
                assert job["status"] == "succeeded", job
                runs.append((job["result"]["train_seconds"], ts(job["started_at"]) - ts(job["created_at"]), job_id,
                             job["result"]["steps"], job["result"].get("flush_seconds", 0.0)))
            worker_s, latency, job_id, steps, flush_s = min(runs)
            engine = create_engine(server.database_url)
            with engine.connect() as conn:
                rows = point_count(conn, job_id)
            engine.dispose()
            print(f"{name:<8}{steps:>7}{direct:>10.3f}{worker_s:>10.3f}{100 * (worker_s / direct - 1):>9.1f}%"
                  f"{1000 * flush_s:>10.0f}{100 * ((worker_s + flush_s) / direct - 1):>9.1f}%"
                  f"{1000 * min(r[1] for r in runs):>20.0f}{rows:>13}")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
        stop_api_server(server)


if __name__ == "__main__":
    main()
