"""The job spec: parse and validate a training job described as JSON.

One validator serves the CLI, the API and the worker. It reports every problem at
once, each with the JSON path of the offending field (``model.layers[1].units``),
and normalises the document (defaults filled in, names resolved to config dicts)
so that what is stored is exactly what runs.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .activations import ACTIVATIONS
from .initializers import ALIASES as INIT_ALIASES
from .initializers import INITIALIZERS
from .layers import LAYERS, layout
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .registry import FieldError, Registry
from .schedules import SCHEDULES

SPEC_VERSION = 1
GRADIENT_MODES = ("backprop", "finite_difference")
MAX_FD_PARAMS = 5000

#: Guards against absurd jobs; the service may pass tighter ones.
DEFAULT_LIMITS: dict[str, int] = {
    "max_layers": 64,
    "max_units": 16384,
    "max_params": 50_000_000,
    "max_epochs": 100_000,
    "max_batch_size": 10_000_000,
    "max_world_size": 64,
    "max_samples": 10_000_000,
}

TOP_LEVEL = ("version", "name", "model", "loss", "optimizer", "schedule", "data", "batch_size", "epochs", "seed",
             "gradient", "distributed", "checkpoint_every", "retention", "early_stopping", "max_restarts",
             "max_runtime_s", "metrics")
DATA_KEYS = ("dataset", "path", "dataset_id", "n_samples", "noise", "target", "validation_split", "standardize",
             "shuffle", "drop_last", "stratify")
MODEL_KEYS = ("input_dim", "init", "dtype", "layers")
LAYER_KEYS = ("units", "activation", "dropout", "init")  # a dense layer's, besides "type"
#: The fields of each layer type besides "type" (whose default is "dense")
LAYER_FIELDS: dict[str, tuple[str, ...]] = {name: LAYERS.get(name).fields for name in LAYERS.names()}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where (a JSON path) and what."""

    path: str
    message: str

    @property
    def pointer(self) -> str:
        """The same location as an RFC 6901 JSON Pointer (``/model/layers/1/units``)."""
        if not self.path:
            return ""
        parts = self.path.replace("[", ".").replace("]", "").split(".")
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts if p)

    def __str__(self) -> str:
        return f"{self.path or '(spec)'}: {self.message}"


class SpecError(ValueError):
    """A spec with problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = "the job spec has 1 problem" if n == 1 else f"the job spec has {n} problems"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def obj(self, doc: Any, path: str, allowed: tuple[str, ...]) -> dict | None:
        if not isinstance(doc, dict):
            self.add(path, f"must be an object, got {_kind(doc)}")
            return None
        for key in doc:
            if key not in allowed:
                self.add(_join(path, key), f"unknown field; known fields: {', '.join(allowed)}")
        return doc

    def section(self, doc: dict, key: str, allowed: tuple[str, ...], hint: str) -> dict | None:
        """A required object at the top of the spec (``hint`` shows its shape when missing)."""
        value = doc.get(key)
        if value is None:
            self.add(key, f"is required{hint}")
            return None
        return self.obj(value, key, allowed)

    def integer(self, doc: dict, key: str, path: str, default: Any, low: int, high: int | None = None,
                nullable: bool = False) -> Any:
        value = doc.get(key, default)
        p = _join(path, key)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):
            self.add(p, f"must be an integer, got {_show(value)}")
            return default
        value = int(value)
        if value < low:
            self.add(p, f"must be >= {low}, got {value}")
        elif high is not None and value > high:
            self.add(p, f"must be <= {high}, got {value}")
        return value

    def number(self, doc: dict, key: str, path: str, default: Any, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False,
               nullable: bool = False) -> Any:
        value = doc.get(key, default)
        p = _join(path, key)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.add(p, f"must be a number, got {_show(value)}")
            return default
        if low is not None and (value <= low if low_open else value < low):
            self.add(p, f"must be {'>' if low_open else '>='} {low:g}, got {value}")
        elif high is not None and (value >= high if high_open else value > high):
            self.add(p, f"must be {'<' if high_open else '<='} {high:g}, got {value}")
        return value

    def boolean(self, doc: dict, key: str, path: str, default: bool) -> bool:
        value = doc.get(key, default)
        if not isinstance(value, bool):
            self.add(_join(path, key), f"must be true or false, got {_show(value)}")
            return default
        return value

    def configurable(self, value: Any, path: str, registry: Registry, aliases: dict[str, str] | None = None
                     ) -> dict | None:
        """Resolve a name/dict through a registry; return its normalised config."""
        if isinstance(value, str) and aliases:
            value = aliases.get(value, value)
        if isinstance(value, dict) and aliases and isinstance(value.get("name"), str):
            value = {**value, "name": aliases.get(value["name"], value["name"])}
        if not isinstance(value, (str, dict)):
            self.add(path, f"must be a {registry.family} name or an object with a \"name\", got {_show(value)}; "
                           f"known: {', '.join(registry.names())}")
            return None
        try:
            return registry.resolve(value).get_config()
        except FieldError as exc:
            # "`lr` must be > 0, got -1" is about the field lr inside this object
            self.add(_join(path, exc.field) if isinstance(value, dict) else path, str(exc))
        except ValueError as exc:
            self.add(path, str(exc))
        return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count_params(input_dim: int, layers: list[dict]) -> int:
    """Number of trainable scalars of a model config (weights, biases, activation and
    normalisation parameters), from :func:`nncore.layers.layout` as the network lays them out."""
    return sum(la.n_params for la in layout(input_dim, layers))


@dataclass(frozen=True)
class _Context:
    """What every section validator may consult besides the document."""

    limits: dict[str, int]
    dataset_names: list[str] | None


#: A section validator: reads its part of the (top-level) document, adds problems to the
#: checker and writes its normalised part into ``out``.
_Section = Callable[[_Checker, dict, dict, _Context], None]


def validate_spec(doc: Any, limits: dict[str, int] | None = None,
                  dataset_names: list[str] | None = None) -> dict[str, Any]:
    """Validate a job spec and return it normalised (defaults filled in).

    Raises
    ------
    SpecError
        Listing every problem with its JSON path.
    """
    ctx = _Context({**DEFAULT_LIMITS, **(limits or {})}, dataset_names)
    c = _Checker()
    if c.obj(doc, "", TOP_LEVEL) is None:
        raise SpecError(c.problems)
    out: dict[str, Any] = {}
    for section in _SECTIONS:
        section(c, doc, out, ctx)
    if c.problems:
        raise SpecError(c.problems)
    return out


def _header(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    out["version"] = c.integer(doc, "version", "", SPEC_VERSION, SPEC_VERSION, SPEC_VERSION)
    if "name" in doc:
        if not isinstance(doc["name"], str) or len(doc["name"]) > 200:
            c.add("name", f"must be a string of at most 200 characters, got {_show(doc['name'])}")
        out["name"] = doc["name"]


def _model(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    model_out: dict[str, Any] = {}
    out["model"] = model_out
    model = c.section(doc, "model", MODEL_KEYS, ": {\"layers\": [{\"units\": ..., \"activation\": ...}, ...]}")
    if model is None:
        return
    max_units = ctx.limits["max_units"]
    model_out["input_dim"] = c.integer(model, "input_dim", "model", None, 1, max_units, nullable=True)
    model_out["init"] = c.configurable(model.get("init", "glorot_uniform"), "model.init", INITIALIZERS,
                                       INIT_ALIASES)
    dtype = model.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        c.add("model.dtype", f"must be \"float32\" or \"float64\", got {_show(dtype)}")
    model_out["dtype"] = dtype
    model_out["layers"] = _layers(c, model.get("layers"), ctx)


def _layers(c: _Checker, layers: Any, ctx: _Context) -> list[dict]:
    if not isinstance(layers, list) or not layers:
        c.add("model.layers", f"must be a non-empty array of layers, got {_show(layers)}")
        return []
    if len(layers) > ctx.limits["max_layers"]:
        c.add("model.layers", f"has {len(layers)} layers; the limit is {ctx.limits['max_layers']}")
        return []
    out = []
    for i, layer in enumerate(layers):
        p = _join("model.layers", i)
        if not isinstance(layer, dict):
            c.add(p, f"must be an object, got {_kind(layer)}")
            continue
        kind = layer.get("type", "dense")
        if not isinstance(kind, str) or kind not in LAYERS:
            c.add(_join(p, "type"), f"unknown layer type {_show(kind)}; known: {', '.join(LAYERS.names())}")
            continue
        if kind != "dense" and "units" in layer:
            c.add(_join(p, "units"), f"a {kind} layer takes no units: its width is its input's")
        c.obj({k: v for k, v in layer.items() if k != "units" or kind == "dense"}, p, ("type",) + LAYER_FIELDS[kind])
        is_output = i == len(layers) - 1
        if kind != "dense":
            if is_output:
                c.add(_join(p, "type"), f"the output (last) layer must be dense, got {kind!r}")
            out.append(_norm_layer(c, layer, p, kind))
        else:
            out.append(_layer(c, layer, p, is_output, ctx))
    return out


def _norm_layer(c: _Checker, layer: dict, p: str, kind: str) -> dict:
    """A layer of width its input's: batchnorm, layernorm, dropout."""
    lo: dict[str, Any] = {"type": kind}
    if kind == "dropout":
        lo["rate"] = c.number(layer, "rate", p, 0.5, 0.0, 1.0, high_open=True)
        return lo
    if kind == "batchnorm":
        lo["momentum"] = c.number(layer, "momentum", p, 0.1, 0.0, 1.0)
    lo["eps"] = c.number(layer, "eps", p, 1e-5, 0.0, low_open=True)
    return lo


def _layer(c: _Checker, layer: dict, p: str, is_output: bool, ctx: _Context) -> dict:
    # a dense layer normalises to exactly what it was before layer types: no "type" key
    lo: dict[str, Any] = {"units": c.integer(layer, "units", p, None, 1, ctx.limits["max_units"])}
    if "units" not in layer:
        c.add(_join(p, "units"), "is required")
    lo["activation"] = c.configurable(layer.get("activation", "identity"), _join(p, "activation"), ACTIVATIONS)
    dropout = c.number(layer, "dropout", p, 0.0, 0.0, 1.0, high_open=True)
    if dropout:
        lo["dropout"] = dropout
        if is_output:
            c.add(_join(p, "dropout"), "is not allowed on the output layer")
    if "init" in layer:
        lo["init"] = c.configurable(layer["init"], _join(p, "init"), INITIALIZERS, INIT_ALIASES)
    return lo


def _loss(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    if "loss" in doc:
        out["loss"] = c.configurable(doc["loss"], "loss", LOSSES)
    else:
        out["loss"] = None
        c.add("loss", f"is required; known: {', '.join(LOSSES.names())}")


def _optimizer(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    out["optimizer"] = c.configurable(doc.get("optimizer", "sgd"), "optimizer", OPTIMIZERS)


def _schedule(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    sched = doc.get("schedule")
    out["schedule"] = None if sched is None else c.configurable(sched, "schedule", SCHEDULES)


def _data(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    data_out: dict[str, Any] = {}
    out["data"] = data_out
    data = c.section(doc, "data", DATA_KEYS, ", e.g. {\"dataset\": \"digits\"}")
    if data is None:
        return
    _data_source(c, data, data_out, ctx.dataset_names)
    if "n_samples" in data:
        data_out["n_samples"] = c.integer(data, "n_samples", "data", None, 1, ctx.limits["max_samples"])
    if "noise" in data:
        data_out["noise"] = c.number(data, "noise", "data", None, 0.0)
    if "target" in data:
        if not isinstance(data["target"], (int, str)) or isinstance(data["target"], bool):
            c.add("data.target", f"must be a column index or name, got {_show(data['target'])}")
        data_out["target"] = data["target"]
    data_out["validation_split"] = c.number(data, "validation_split", "data", 0.2, 0.0, 1.0, high_open=True)
    for key, default in (("standardize", True), ("shuffle", True), ("drop_last", False), ("stratify", True)):
        data_out[key] = c.boolean(data, key, "data", default)


def _data_source(c: _Checker, data: dict, data_out: dict, dataset_names: list[str] | None) -> None:
    """``dataset``, ``dataset_id`` and ``path``: where the samples come from."""
    ds = data.get("dataset")
    if "dataset_id" in data:
        if not isinstance(data["dataset_id"], (int, str)) or isinstance(data["dataset_id"], bool):
            c.add("data.dataset_id", f"must be the id of an uploaded dataset, got {_show(data['dataset_id'])}")
        data_out["dataset_id"] = data["dataset_id"]
        ds = ds or "uploaded"
    elif not isinstance(ds, str):
        c.add("data.dataset", f"must be a dataset name, got {_show(ds)}"
              + (f"; known: {', '.join(dataset_names)}" if dataset_names else ""))
    elif dataset_names is not None and ds not in dataset_names:
        c.add("data.dataset", f"unknown dataset {ds!r}; known: {', '.join(dataset_names)}")
    data_out["dataset"] = ds
    if ds in ("csv", "npz") and not isinstance(data.get("path"), str):
        c.add("data.path", f"is required for dataset {ds!r}: the file to read")
    if "path" in data:
        if not isinstance(data["path"], str):
            c.add("data.path", f"must be a file path, got {_show(data['path'])}")
        data_out["path"] = data["path"]


def _training(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    """Batch size, epochs, seed and how gradients are computed."""
    if doc.get("batch_size", 32) in ("full", None):
        out["batch_size"] = None
    else:
        out["batch_size"] = c.integer(doc, "batch_size", "", 32, 1, ctx.limits["max_batch_size"])
    out["epochs"] = c.integer(doc, "epochs", "", 10, 1, ctx.limits["max_epochs"])
    out["seed"] = c.integer(doc, "seed", "", 0, 0, 2**63 - 1)
    grad = doc.get("gradient", "backprop")
    if grad not in GRADIENT_MODES:
        c.add("gradient", f"must be one of {', '.join(GRADIENT_MODES)}, got {_show(grad)}")
    out["gradient"] = grad


def _distributed(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    dist = doc.get("distributed", {})
    ws = 1
    if c.obj(dist, "distributed", ("world_size",)) is not None:
        ws = c.integer(dist, "world_size", "distributed", 1, 1, ctx.limits["max_world_size"])
    out["distributed"] = {"world_size": ws}


def _checkpointing(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    out["checkpoint_every"] = c.integer(doc, "checkpoint_every", "", 1, 0)


def _early_stopping(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    es = doc.get("early_stopping")
    # an empty object, like null, turns early stopping off
    if es is None or not c.obj(es, "early_stopping", ("monitor", "patience", "min_delta", "mode", "restore_best")):
        out["early_stopping"] = None
        return
    monitor = es.get("monitor", "val_loss")
    if not isinstance(monitor, str):
        c.add("early_stopping.monitor", f"must be a metric name, got {_show(monitor)}")
    mode = es.get("mode")
    if mode not in (None, "min", "max"):
        c.add("early_stopping.mode", f"must be \"min\" or \"max\", got {_show(mode)}")
    out["early_stopping"] = {"monitor": monitor,
                             "patience": c.integer(es, "patience", "early_stopping", 10, 0),
                             "min_delta": c.number(es, "min_delta", "early_stopping", 0.0, 0.0),
                             "mode": mode,
                             "restore_best": c.boolean(es, "restore_best", "early_stopping", True)}
    if isinstance(monitor, str) and monitor.startswith("val_") and out["data"].get("validation_split") == 0:
        c.add("early_stopping.monitor", f"monitors {monitor!r} but data.validation_split is 0, so there is no "
                                        "validation set; monitor \"loss\" or set a validation_split")


def _retention(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    ret = doc.get("retention", {})
    if c.obj(ret, "retention", ("keep_last", "keep_best", "best_metric")) is None:
        return
    out["retention"] = {"keep_last": c.integer(ret, "keep_last", "retention", 3, 0),
                        "keep_best": c.boolean(ret, "keep_best", "retention", True),
                        "best_metric": ret.get("best_metric")}
    bm = ret.get("best_metric")
    if bm is not None and not isinstance(bm, str):
        c.add("retention.best_metric", f"must be a metric name, got {_show(bm)}")


def _run_limits(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    """How often a failed job is restarted and how long it may run."""
    out["max_restarts"] = c.integer(doc, "max_restarts", "", 2, 0, 100)
    out["max_runtime_s"] = c.number(doc, "max_runtime_s", "", None, 0.0, low_open=True, nullable=True)


def _metrics(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    """How often step figures are recorded, and which raw points the service keeps
    (``raw_steps``: "all", "none" — rollups only — or about the last N steps)."""
    if "metrics" in doc and c.obj(doc["metrics"], "metrics", ("every_steps", "raw_steps")) is not None:
        m = doc["metrics"]
        out["metrics"] = {"every_steps": c.integer(m, "every_steps", "metrics", 1, 1)}
        if "raw_steps" in m:
            raw = m["raw_steps"]
            if raw in ("all", "none") or (isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1):
                out["metrics"]["raw_steps"] = raw
            else:
                c.add("metrics.raw_steps", f"must be \"all\", \"none\" or a number of steps >= 1, got {_show(raw)}")


def _model_size(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    """Parameter count against the limits, only when the model (and all else) is valid."""
    model = out["model"]
    layers_ok = model.get("layers") and all(
        "type" in la or (isinstance(la.get("units"), int) and la.get("activation")) for la in model["layers"])
    if c.problems or not layers_ok or not model.get("input_dim"):
        return
    n_params = count_params(model["input_dim"], model["layers"])
    if n_params > ctx.limits["max_params"]:
        c.add("model", f"has {n_params:,} parameters; the limit is {ctx.limits['max_params']:,}")
    if out["gradient"] == "finite_difference" and n_params > MAX_FD_PARAMS:
        c.add("gradient", f"finite-difference training needs 2 forward passes per parameter per step; this "
                          f"model has {n_params:,} parameters, above the limit of {MAX_FD_PARAMS:,}")


def _ranks_per_batch(c: _Checker, doc: dict, out: dict, ctx: _Context) -> None:
    ws, bs = out["distributed"]["world_size"], out["batch_size"]
    if isinstance(bs, int) and ws > bs:
        c.add("distributed.world_size", f"{ws} ranks cannot split a batch of {bs} samples; "
                                        "every rank needs at least one sample per batch")


#: In this order: problems are reported, and the normalised spec's keys written, in it.
#: The last two combine fields the earlier ones normalised.
_SECTIONS: tuple[_Section, ...] = (
    _header, _model, _loss, _optimizer, _schedule, _data, _training, _distributed, _checkpointing,
    _early_stopping, _retention, _run_limits, _metrics, _model_size, _ranks_per_batch,
)


def parse_spec_text(text: str, source: str = "spec") -> dict[str, Any]:
    """Parse JSON text, turning syntax errors into a SpecError with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError([Problem("", f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                     f"column {exc.colno}")]) from None


def load_spec(path: str | Path, limits: dict[str, int] | None = None) -> dict[str, Any]:
    """Read and validate a spec file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([Problem("", f"spec file {str(path)!r} does not exist")])
    return validate_spec(parse_spec_text(path.read_text(), str(path)), limits)
