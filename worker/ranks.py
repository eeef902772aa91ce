"""Data-parallel jobs on a worker: MPI ranks started with ``subprocess`` (a prefork pool
child may not create multiprocessing children), rank 0's events written to SQL here."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from nncore.callbacks import StepLog
from nncore.distributed import launch, terminate_group
from service.config import Settings

from .runner import Heartbeat, Reporter, delete_checkpoint_row, save_checkpoint_row


def run_distributed(sessions: sessionmaker[Session], settings: Settings, job_id: int, spec: dict[str, Any],
                    out_dir: Path, hb: Heartbeat, data_path: str | None, data_target: int | str | None,
                    resume_path: str | None, started: float) -> tuple[str, str | None, dict[str, Any] | None] | None:
    """Train on ``spec.distributed.world_size`` ranks; return (status, error, summary),
    or None when the lease was lost (another worker owns the job now)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir.parent / "spec.json"
    spec_path.write_text(json.dumps(spec))
    args = ["--spec", str(spec_path), "--out", str(out_dir), "--steps"]
    if data_path:
        args += ["--data-path", data_path]
    if data_target is not None:
        args += ["--target", str(data_target)]
    if resume_path:
        args += ["--resume", resume_path]
    reporter = Reporter(sessions, job_id, hb, spec["epochs"], 1)
    procs: list[Any] = []
    seen: dict[str, Any] = {}

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":
            reporter.steps_per_epoch = ev["steps_per_epoch"]
        elif kind == "step":
            reporter.on_step(None, StepLog(ev["step"], ev["epoch"], ev["batch"], ev["loss"], ev["lr"],
                                           ev["samples"], math.nan))
        elif kind == "epoch":
            reporter.on_epoch(None, ev)
        elif kind == "checkpoint":
            save_checkpoint_row(sessions, job_id, ev["epoch"], ev["step"], Path(ev["path"]), ev["sha256"],
                                ev.get("metrics") or {}, ev.get("is_best", False))
        elif kind == "checkpoint_deleted":
            delete_checkpoint_row(sessions, job_id, ev["epoch"])
        elif kind == "summary":
            seen["summary"] = ev
        elif kind == "error":
            seen["error"] = ev.get("message")
        if (hb.cancel.is_set() or hb.lost.is_set()) and "stopped" not in seen and procs:
            seen["stopped"] = "cancelled" if hb.cancel.is_set() else "lease lost"
            terminate_group(procs[0], grace_s=5.0)

    try:
        result = launch(spec["distributed"]["world_size"], "nncore.distributed", args, on_event,
                        timeout_s=spec.get("max_runtime_s"), on_start=procs.append)
    except BaseException:
        reporter.close()
        raise
    reporter.flush()
    if seen.get("stopped") == "lease lost":
        return None
    if seen.get("stopped") == "cancelled":
        return "cancelled", None, None
    summary = seen.get("summary")
    if result.timed_out:
        return "failed", f"reached the time limit of {spec['max_runtime_s']:g} s", summary
    if seen.get("error"):
        # a rank refused the job (bad data, a batch smaller than the world size): retrying cannot help
        raise ValueError(seen["error"])
    if not result.ok or summary is None:
        raise RuntimeError(result.error or "the MPI ranks ended without reporting a result")
    summary = {**summary, "seconds": round(time.monotonic() - started, 3)}
    if summary["status"] in ("completed", "early_stopped"):
        return "succeeded", None, summary
    return "failed", summary["reason"], summary
