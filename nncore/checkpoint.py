"""Checkpoint files: one .npz, written atomically, read without pickle.

A checkpoint maps names to arrays: ``params`` (the flat buffer), ``opt.*`` (optimiser
state), scalars, and JSON documents stored as 0-d unicode arrays (``spec``,
``history``, ``meta``) so that ``np.load(..., allow_pickle=False)`` reads all of it.
The file is written to a temporary name in the same folder, fsynced, then renamed:
a crash never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


def _encode(state: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        elif isinstance(value, (dict, list, str)) or value is None:
            arrays["json:" + key] = np.asarray(json.dumps(value))
        elif isinstance(value, (bool, int, float, np.integer, np.floating)):
            arrays[key] = np.asarray(value)
        else:
            raise TypeError(f"cannot store {key!r} of type {type(value).__name__} in a checkpoint")
    return arrays


def _decode(arrays: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key in arrays.files:
        value = arrays[key]
        if key.startswith("json:"):
            state[key[5:]] = json.loads(str(value))
        elif value.ndim == 0:
            state[key] = value.item()
        else:
            state[key] = value
    return state


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> str:
    """Write ``state`` to ``path`` atomically; return the file's sha256 (hex)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **_encode(state))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return sha256_of(path)


class ChecksumMismatch(ValueError):
    """A checkpoint file is not the one whose sha256 was recorded when it was written."""


def load_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles).

    With ``sha256`` (what :func:`save_checkpoint` returned), the file is read once,
    hashed and loaded from those same bytes, so what is loaded is what was verified;
    :class:`ChecksumMismatch` if it changed since.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    source: Any = path
    if sha256 is not None:
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ChecksumMismatch(f"checkpoint {path.name} has sha256 {actual[:12]}..., not the {sha256[:12]}... "
                                   "recorded when it was written: the file changed since (a disk fault or a "
                                   "hand edit)")
        source = io.BytesIO(data)
    try:
        with np.load(source, allow_pickle=False) as arrays:
            state = _decode(arrays)
    except ValueError as exc:
        raise ValueError(f"{path} is not a trainyard checkpoint (or contains pickled objects): {exc}") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {state.get('format_version')!r}")
    return state


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
