"""Data-parallel jobs on a worker: MPI ranks started with ``subprocess`` (a prefork pool
child may not create multiprocessing children), rank 0's events written to SQL here
through the attempt's fence. The ranks are stopped as soon as the attempt is cancelled
or loses its lease."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from nncore.datasets import FileLimits
from nncore.hooks import StepLog
from service.store.lifecycle import LeaseLost
from service.store.status import JobStatus, status_for

from .attempt import Attempt, Reporter
from .launch import launch, terminate_group


def run_distributed(attempt: Attempt, spec: dict[str, Any], out_dir: Path, data_path: str | None,
                    data_target: int | str | None, resume_path: str | None, resume_sha256: str | None, started: float,
                    raw_steps: int | None = None, data_limits: FileLimits | None = None
                    ) -> tuple[JobStatus, str | None, dict[str, Any] | None]:
    """Train on ``spec.distributed.world_size`` ranks; return (status, error, summary).
    LeaseLost when the attempt lost its job (the ranks are stopped first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name_suffix = attempt.checkpoint_suffix
    spec_path = out_dir.parent / f"spec{name_suffix}.json"
    spec_path.write_text(json.dumps(spec))
    args = ["--spec", str(spec_path), "--out", str(out_dir), "--steps", f"--checkpoint-suffix={name_suffix}",
            "--launcher-deletes"]
    if data_path:
        args += ["--data-path", data_path]
    if data_target is not None:
        args += ["--target", str(data_target)]
    if data_limits is not None:
        args += ["--data-limits", f"{data_limits.max_rows},{data_limits.max_features},{data_limits.max_cells}"]
    if resume_path:
        args += ["--resume", resume_path]
        if resume_sha256:
            args += ["--resume-sha256", resume_sha256]
    reporter = Reporter(attempt, spec["epochs"], 1, raw_steps)
    procs: list[Any] = []
    seen: dict[str, Any] = {}

    def stop_ranks(why: str) -> None:
        if "stopped" not in seen and procs:
            seen["stopped"] = why
            terminate_group(procs[0], grace_s=5.0)

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if "stopped" in seen:
            return  # nothing more of this launch is recorded
        try:
            if kind == "start":
                reporter.steps_per_epoch = ev["steps_per_epoch"]
            elif kind == "step":
                reporter.on_step(None, StepLog(ev["step"], ev["epoch"], ev["batch"], ev["loss"], ev["lr"],
                                               ev["samples"], math.nan))
            elif kind == "epoch":
                reporter.on_epoch(None, ev)
            elif kind == "checkpoint":
                reporter.checkpoint(ev["epoch"], ev["step"], Path(ev["path"]), ev["sha256"],
                                    ev.get("metrics") or {}, ev.get("is_best", False))
            elif kind == "checkpoint_deleted":
                reporter.drop_checkpoint(ev["epoch"], Path(ev["path"]))
            elif kind == "summary":
                seen["summary"] = ev
            elif kind == "error":
                seen["error"] = ev.get("message")
        except LeaseLost:
            stop_ranks("lease lost")
            return
        if attempt.lost.is_set():
            stop_ranks("lease lost")
        elif attempt.cancel.is_set():
            stop_ranks("cancelled")

    try:
        result = launch(spec["distributed"]["world_size"], "nncore.distributed", args, on_event,
                        timeout_s=spec.get("max_runtime_s"), on_start=procs.append)
        if seen.get("stopped") == "lease lost" or attempt.lost.is_set():
            raise LeaseLost(attempt.lease, "found by the MPI launcher")
        reporter.flush()
    finally:
        reporter.close()
    if seen.get("stopped") == "cancelled":
        return JobStatus.CANCELLED, None, None
    summary = seen.get("summary")
    if result.timed_out:
        return JobStatus.FAILED, f"reached the time limit of {spec['max_runtime_s']:g} s", summary
    if seen.get("error"):
        # a rank refused the job (bad data, a batch smaller than the world size): retrying cannot help
        raise ValueError(seen["error"])
    if not result.ok or summary is None:
        raise RuntimeError(result.error or "the MPI ranks ended without reporting a result")
    summary = {**summary, "seconds": round(time.monotonic() - started, 3)}
    status = status_for(summary["status"])
    return status, summary["reason"] if status is JobStatus.FAILED else None, summary
