"""Data-parallel scaling: samples/s at world size 1 and 2, all-reduce cost, efficiency.

For the 784-256-128-10 and 1024-1024-1024-10 MLPs (ReLU, softmax + CE, SGD momentum,
float32, one BLAS thread per rank), each world size is a real ``mpiexec -n N`` launch
of this file's rank program. Per configuration it prints samples/s, the all-reduce
time per step and its share of the step, scaling efficiency
throughput(N) / (N * throughput(1)), and the time of one reducer all-reduce of the
flat gradient buffer next to a plain ``comm.Allreduce`` of the same size (the
reducer's own overhead).

Usage:  python bench/scaling.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

CONFIGS = {
    "mnist": dict(dims=[784, 256, 128, 10], batch=128, n=8192, epochs=3),
    "large": dict(dims=[1024, 1024, 1024, 10], batch=256, n=4096, epochs=2),
}


def rank_program(name: str, epochs: int) -> None:
    from mpi4py import MPI

    from nncore.distributed import MPIReducer
    from nncore.losses import LOSSES
    from nncore.network import Dense, Network
    from nncore.optimizers import OPTIMIZERS
    from nncore.trainer import TrainData, Trainer

    cfg = CONFIGS[name]
    red = MPIReducer()

    class Timed:
        """The real reducer, with the time spent in all-reduce added up."""

        rank, world_size = red.rank, red.world_size
        seconds, calls = 0.0, 0

        def shard(self, start, stop):
            return red.shard(start, stop)

        def allreduce_sum(self, buf):
            t = time.perf_counter()
            red.allreduce_sum(buf)
            Timed.seconds += time.perf_counter() - t
            Timed.calls += 1

        def broadcast(self, buf):
            red.broadcast(buf)

    rng = np.random.default_rng(0)
    dims = cfg["dims"]
    X = rng.normal(size=(cfg["n"], dims[0])).astype(np.float32)
    labels = (X[:, :10] @ rng.normal(size=(10, 10))).argmax(axis=1)
    data = TrainData(X, np.eye(10, dtype=np.float32)[labels], labels)
    net = Network(dims[0], [Dense(d, "relu") for d in dims[1:-1]] + [Dense(10, "softmax")], seed=0)
    red.broadcast(net.params)

    def trainer(n_epochs, reducer):
        return Trainer(net, LOSSES.resolve("categorical_cross_entropy"),
                       OPTIMIZERS.resolve({"name": "sgd", "lr": 0.01, "momentum": 0.9}), batch_size=cfg["batch"],
                       epochs=n_epochs, seed=1, task="bench", reducer=reducer)

    trainer(1, red).fit(data)  # warm-up
    red.comm.Barrier()
    timed = Timed()
    t = time.perf_counter()
    trainer(epochs, timed).fit(data)
    wall = time.perf_counter() - t

    # one all-reduce of the flat buffer (+1 slot for the loss), ours vs plain mpi4py
    buf = np.zeros(net.n_params + 1, dtype=np.float32)
    reps = 20

    def clock(fn):
        red.comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps

    ours = clock(lambda: red.allreduce_sum(buf))
    plain = clock(lambda: red.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM))
    if red.rank == 0:
        print(json.dumps({"event": "bench", "world_size": red.world_size, "samples_per_s": epochs * cfg["n"] / wall,
                          "allreduce_per_step": timed.seconds / max(timed.calls, 1),
                          "step": wall / max(timed.calls, 1) if red.world_size > 1 else wall / (epochs * -(-cfg["n"]
                                                                                                // cfg["batch"])),
                          "allreduce_share": timed.seconds / wall, "ours_allreduce": ours,
                          "plain_allreduce": plain, "params": net.n_params}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rank", nargs=2, metavar=("CONFIG", "EPOCHS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank:
        rank_program(args.rank[0], int(args.rank[1]))
        return
    from worker.launch import launch

    print(f"{'config':<7}{'ranks':>6}{'samples/s':>12}{'step ms':>9}{'allreduce ms':>14}{'share':>7}"
          f"{'efficiency':>11}{'ours ms':>9}{'mpi4py ms':>10}")
    for name, cfg in CONFIGS.items():
        base = None
        for ws in (1, 2):
            events = []
            epochs = 1 if args.quick else cfg["epochs"]
            res = launch(ws, "bench.scaling", ["--rank", name, str(epochs)], events.append, timeout_s=900)
            if not res.ok:
                sys.exit(f"{name} at world size {ws} failed: {res.error}")
            r = events[-1]
            base = base or r["samples_per_s"]
            eff = r["samples_per_s"] / (ws * base)
            print(f"{name:<7}{ws:>6}{r['samples_per_s']:>12,.0f}{1e3 * r['step']:>9.2f}"
                  f"{1e3 * r['allreduce_per_step']:>14.3f}{100 * r['allreduce_share']:>6.1f}%{100 * eff:>10.1f}%"
                  f"{1e3 * r['ours_allreduce']:>9.3f}{1e3 * r['plain_allreduce']:>10.3f}")


if __name__ == "__main__":
    main()
