"""Data-parallel training over MPI: the gradient reducer and the rank program.

Protocol (DESIGN.md, "Data-parallel training"): N ranks hold identical parameters
(rank 0's are broadcast at the start). Every rank walks the same global batches (the
shuffle of an epoch is a pure function of (seed, epoch)); rank r takes a contiguous
slice of each batch, computes the gradient rows scaled by 1/|global batch|, and one
``Allreduce(IN_PLACE, SUM)`` over the flat gradient buffer (with the batch's loss
total in one extra slot) leaves every rank with exactly the global-batch mean
gradient, also for an uneven last batch. Hence N ranks with global batch B follow
the trajectory of one process with batch B, to float rounding.

Two things make that hold beyond dense layers. BatchNorm's training forward
all-reduces its per-feature sum (with the row count) and then its centred sum of
squares, and its backward the sums of dy and dy*xhat, so each rank normalises with
the global batch's statistics (``nncore.layers.BatchNorm``). Dropout masks and RReLU
slopes are drawn for the whole global batch on every rank, each keeping its own rows
(``nncore.data.ShardedNoise``).

``mpi4py.MPI`` is imported only inside a rank (:class:`MPIReducer`). Starting the ranks
(``mpiexec`` from the ``mpich`` wheel) and supervising them is ``worker.launch``'s job.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .datasets import FileLimits


def split_rows(start: int, stop: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of rows [start, stop) among ``size`` ranks.

    The first (stop - start) % size ranks get one row more, so shares differ by at
    most one and cover the batch exactly.
    """
    n = stop - start
    base, extra = divmod(n, size)
    lo = start + rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class MPIReducer:
    """The Trainer's reducer on MPI.COMM_WORLD (or ``comm``)."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI  # only ranks import MPI: the launcher must not initialise it

        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        return split_rows(start, stop, self.rank, self.world_size)

    def allreduce_sum(self, buf: np.ndarray) -> None:
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def broadcast(self, buf: np.ndarray) -> None:
        self.comm.Bcast(buf, root=0)

    def abort(self, code: int) -> None:
        self.comm.Abort(code)


# -- the rank program -----------------------------------------------------------------

def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def rank_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of each rank: ``python -m mpi4py -m nncore.distributed --spec F ...``.

    Rank 0 prints one JSON event per line on stdout (start, step, epoch, summary);
    a rank that fails prints an ``error`` event and aborts every rank.
    """
    ap = argparse.ArgumentParser(prog="nncore.distributed")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out")
    ap.add_argument("--resume")
    ap.add_argument("--resume-sha256")
    ap.add_argument("--steps", action="store_true", help="emit a step event per update")
    ap.add_argument("--data-path", help="the file of an uploaded dataset the spec names by id")
    ap.add_argument("--target", help="its target column (name, or index as digits)")
    ap.add_argument("--data-limits", help="rows,features,cells: the bounds it was checked against on upload")
    ap.add_argument("--checkpoint-suffix", default="", help="appended to checkpoint file names (one per attempt)")
    ap.add_argument("--launcher-deletes", action="store_true",
                    help="leave deleting the checkpoints retention drops to the launcher (checkpoint_deleted events)")
    args = ap.parse_args(argv)
    reducer = MPIReducer()
    rank = reducer.rank
    with abort_unless_finished(reducer):
        _run_rank(args, reducer, rank)


def _limits(text: str | None) -> FileLimits | None:
    from .datasets import FileLimits

    if not text:
        return None
    rows, features, cells = (int(v) for v in text.split(","))
    return FileLimits(max_rows=rows, max_features=features, max_cells=cells)


def _run_rank(args: argparse.Namespace, reducer: MPIReducer, rank: int) -> None:
    from .callbacks import EventEmitter
    from .job import Job, summarize
    from .spec import SpecError, validate_spec

    try:
        spec = validate_spec(json.loads(Path(args.spec).read_text()))
        emitter = [EventEmitter(_emit, steps=args.steps)] if rank == 0 else []
        target = int(args.target) if args.target and args.target.isdigit() else args.target
        job = Job(spec, out_dir=args.out, callbacks=emitter, reducer=reducer, data_path=args.data_path,
                  data_target=target, data_limits=_limits(args.data_limits),
                  checkpoint_hooks=_checkpoint_events(args.checkpoint_suffix, args.launcher_deletes)
                  if rank == 0 else None)
        if args.resume:
            job.resume(args.resume, args.resume_sha256)
        # every rank starts from rank 0's parameters, whatever their own initialisation
        reducer.broadcast(job.net.params)
        if job.net.state.size:
            reducer.broadcast(job.net.state)
        if rank == 0:
            _emit(job.describe())
        started = time.monotonic()
        result = job.run()
        if rank == 0:
            _emit(summarize(job, result, time.monotonic() - started))
    except (SpecError, ValueError, FileNotFoundError, KeyError) as exc:
        _emit({"event": "error", "rank": rank, "message": str(exc)})
        reducer.abort(2)


def _checkpoint_events(suffix: str, launcher_deletes: bool) -> dict[str, Any]:
    """Rank 0 tells the launcher about every checkpoint written and dropped; with
    ``launcher_deletes`` it leaves deleting the dropped files to the launcher (which
    unlists a checkpoint before its file goes)."""
    def on_save(trainer: Any, epoch: int, path: Path, digest: str) -> None:
        best = next((cb for cb in trainer.callbacks if hasattr(cb, "last_is_best")), None)
        _emit({"event": "checkpoint", "epoch": epoch, "step": trainer.step, "path": str(path), "sha256": digest,
               "metrics": trainer.history[-1] if trainer.history else {},
               "is_best": bool(best and best.last_is_best)})

    def on_delete(epoch: int, path: Path) -> None:
        if not launcher_deletes:
            path.unlink(missing_ok=True)
        _emit({"event": "checkpoint_deleted", "epoch": epoch, "path": str(path)})

    return {"on_save": on_save, "on_delete": on_delete, "name_suffix": suffix}


@contextlib.contextmanager
def abort_unless_finished(reducer: MPIReducer) -> Iterator[None]:
    """Abort every rank if this one leaves the block early by any route, ``sys.exit(0)``
    included: the others would otherwise wait in a collective (and this rank in
    MPI_Finalize) forever. An exception is printed first, as Python would."""
    finished = False
    try:
        yield
        finished = True
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        raise
    finally:
        if not finished:
            reducer.abort(3)


if __name__ == "__main__":
    rank_main()
