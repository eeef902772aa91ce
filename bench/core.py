"""Training throughput: nncore's Trainer vs PyTorch CPU vs scikit-learn, in one run.

Three MLPs on synthetic data, SGD + momentum 0.9, lr 0.01, float32:
  small   2-16-16-1        sigmoid hidden, sigmoid + BCE,   batch 32
  mnist   784-256-128-10   ReLU hidden,    softmax + CE,    batch 128
  large   1024-1024-1024-10 ReLU hidden,   softmax + CE,    batch 256
  bn      784-256-BN-128-LN-dropout(0.1)-10, ReLU hidden, softmax + CE, batch 128
          (a mixed network: Network's general per-layer path; scikit-learn has no
          normalisation layers, so its column is n/a)
nncore runs its real Trainer with per-step loss and accuracy on. PyTorch runs a plain
nn.Sequential loop over pre-made tensor batches. scikit-learn runs MLPClassifier
(solver "sgd", same sizes and batch, partial epochs via max_iter).
Each configuration is timed at 1 BLAS thread and again at 2. Prints samples/s and
the GFLOP/s nncore achieves in its matrix products next to the machine's float32
matmul rate (a 1024x1024 product).

Usage:  python bench/core.py [--quick] [--only small,mnist,large,bn] [--threads 1,2]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from nncore.losses import LOSSES
from nncore.network import Dense, Network
from nncore.optimizers import OPTIMIZERS
from nncore.trainer import TrainData, Trainer

CONFIGS = {
    "small": dict(dims=[2, 16, 16, 1], hidden="sigmoid", batch=32, n=32768),
    "mnist": dict(dims=[784, 256, 128, 10], hidden="relu", batch=128, n=8192),
    "large": dict(dims=[1024, 1024, 1024, 10], hidden="relu", batch=256, n=4096),
    # dims are the dense widths; "layers" spells the whole stack (the non-dense layers
    # keep the width of their input)
    "bn": dict(dims=[784, 256, 128, 10], hidden="relu", batch=128, n=8192,
               layers=[{"units": 256, "activation": "relu"}, {"type": "batchnorm"},
                       {"units": 128, "activation": "relu"}, {"type": "layernorm"},
                       {"type": "dropout", "rate": 0.1}, {"units": 10, "activation": "softmax"}]),
}
EPOCHS = {"small": 8, "mnist": 3, "large": 2, "bn": 3}


def make_data(cfg: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(cfg["n"], cfg["dims"][0])).astype(np.float32)
    k = cfg["dims"][-1]
    if k == 1:
        labels = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    else:
        labels = (X[:, :k] @ rng.normal(size=(k, k))).argmax(axis=1).astype(np.int64)
    return X, labels


def flops_per_sample(dims: list[int]) -> float:
    # forward z = a W and backward dW = a^T d: 2 m n each; da = d W^T (2 m n) for every
    # layer but the first, whose input needs no gradient
    macs = [a * b for a, b in zip(dims[:-1], dims[1:], strict=False)]
    return 6.0 * sum(macs) - 2.0 * macs[0]


def bench_nncore(cfg: dict, X: np.ndarray, labels: np.ndarray, epochs: int) -> float:
    dims, k = cfg["dims"], cfg["dims"][-1]
    if "layers" in cfg:
        layers = cfg["layers"]
    else:
        layers = [Dense(d, cfg["hidden"]) for d in dims[1:-1]]
        layers.append(Dense(k, "sigmoid" if k == 1 else "softmax"))
    net = Network(dims[0], layers, init="glorot_uniform", dtype="float32", seed=0)
    Y = labels[:, None].astype(np.float32) if k == 1 else np.eye(k, dtype=np.float32)[labels]
    loss = LOSSES.resolve("binary_cross_entropy" if k == 1 else "categorical_cross_entropy")
    opt = OPTIMIZERS.resolve({"name": "sgd", "lr": 0.01, "momentum": 0.9})
    data = TrainData(X, Y, labels)
    Trainer(net, loss, opt, batch_size=cfg["batch"], epochs=1, seed=0, task="bench").fit(data)  # warm-up
    tr = Trainer(net, loss, opt, batch_size=cfg["batch"], epochs=epochs, seed=1, task="bench")
    t = time.perf_counter()
    tr.fit(data)
    return epochs * len(X) / (time.perf_counter() - t)


def bench_torch(cfg: dict, X: np.ndarray, labels: np.ndarray, epochs: int, threads: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dims, k = cfg["dims"], cfg["dims"][-1]
    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[cfg["hidden"]]
    mods: list = []
    if "layers" in cfg:
        width = dims[0]
        for la in cfg["layers"]:
            kind = la.get("type", "dense")
            if kind == "dense":
                mods.append(torch.nn.Linear(width, la["units"]))
                width = la["units"]
                if la.get("activation") == cfg["hidden"]:
                    mods.append(act())
            elif kind == "batchnorm":
                mods.append(torch.nn.BatchNorm1d(width))
            elif kind == "layernorm":
                mods.append(torch.nn.LayerNorm(width))
            elif kind == "dropout":
                mods.append(torch.nn.Dropout(la["rate"]))
    else:
        for a, b in zip(dims[:-2], dims[1:-1], strict=False):
            mods += [torch.nn.Linear(a, b), act()]
        mods.append(torch.nn.Linear(dims[-2], k))
    model = torch.nn.Sequential(*mods)
    lossf = torch.nn.BCEWithLogitsLoss() if k == 1 else torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    Xt = torch.from_numpy(X)
    Yt = torch.from_numpy(labels[:, None].astype(np.float32)) if k == 1 else torch.from_numpy(labels)
    bs = cfg["batch"]
    batches = [(Xt[i:i + bs], Yt[i:i + bs]) for i in range(0, len(X), bs)]

    def run(n_epochs: int) -> None:
        for _ in range(n_epochs):
            for xb, yb in batches:
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = lossf(out, yb)
                loss.backward()
                opt.step()

    run(1)
    t = time.perf_counter()
    run(epochs)
    return epochs * len(X) / (time.perf_counter() - t)


def bench_sklearn(cfg: dict, X: np.ndarray, labels: np.ndarray, epochs: int) -> float | None:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    if "layers" in cfg:
        return None  # MLPClassifier has no normalisation or dropout layers
    dims = cfg["dims"]
    clf = MLPClassifier(hidden_layer_sizes=tuple(dims[1:-1]), activation="logistic" if cfg["hidden"] == "sigmoid"
                        else "relu", solver="sgd", learning_rate_init=0.01, momentum=0.9, nesterovs_momentum=False,
                        batch_size=cfg["batch"], max_iter=epochs, tol=0.0, n_iter_no_change=10**9, shuffle=True,
                        random_state=0, alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        clf.fit(X, labels)
        return epochs * len(X) / (time.perf_counter() - t)


def matmul_gflops(threads: int, n: int = 1024) -> float:
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    b = a.copy()
    c = np.empty_like(a)
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=c)
        reps, t = 0, time.perf_counter()
        while time.perf_counter() - t < 0.5:
            np.matmul(a, b, out=c)
            reps += 1
        return 2.0 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    ap.add_argument("--only", default="small,mnist,large")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=5, help="best of N runs per cell (the machine is noisy)")
    args = ap.parse_args()
    names = args.only.split(",")
    threads_list = [int(t) for t in args.threads.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    for threads in threads_list:
        peak = matmul_gflops(threads)
        print(f"\n== {threads} BLAS thread(s); float32 1024x1024 matmul: {peak:.1f} GFLOP/s ==")
        print(f"{'config':<8}{'nncore':>14}{'torch':>14}{'sklearn':>14}{'x torch':>9}{'x sklearn':>10}"
              f"{'nncore GFLOP/s':>16}")
        for name in names:
            cfg = CONFIGS[name]
            X, labels = make_data(cfg)
            epochs = 1 if args.quick else EPOCHS[name]
            ours, torch_sps, sk = 0.0, None, None
            with threadpool_limits(threads, user_api="blas"):
                # interleaved, best of N: the machine's speed drifts, so each contender
                # gets the same spread of conditions
                for _ in range(args.repeat):
                    ours = max(ours, bench_nncore(cfg, X, labels, epochs))
                    t = bench_torch(cfg, X, labels, epochs, threads)
                    torch_sps = t if torch_sps is None or (t and t > torch_sps) else torch_sps
                sk = bench_sklearn(cfg, X, labels, epochs)
            fmt = lambda v: f"{v:>14,.0f}" if v else f"{'n/a':>14}"  # noqa: E731
            ratio = lambda v, w, p, ours=ours: f"{ours / v:>{w}.{p}f}" if v else f"{'n/a':>{w}}"  # noqa: E731
            gf = ours * flops_per_sample(cfg["dims"]) / 1e9
            print(f"{name:<8}{fmt(ours)}{fmt(torch_sps)}{fmt(sk)}{ratio(torch_sps, 9, 2)}{ratio(sk, 10, 1)}"
                  f"{gf:>11.1f} ({100 * gf / peak:.0f}%)")


if __name__ == "__main__":
    main()
