"""Learning-rate schedules (section 10.2) against values worked out by hand from their formulas.

A schedule is called as ``schedule(lr0, step, epoch)``, ``step`` being the number of updates
made before this one (0 for the first update).
"""
from __future__ import annotations

import json
import math
from itertools import pairwise

import pytest

from nncore.schedules import SCHEDULES

NAMES = SCHEDULES.names()
EXPECTED_NAMES = {"constant", "decay", "step", "exponential", "cosine", "reduce_on_plateau", "warmup"}
COSINE_CFG = {"name": "cosine", "t_max": 9, "lr_min": 0.001, "restarts": True, "t_mult": 2}
NON_DEFAULT = {
    "constant": {},
    "decay": {"decay": 0.25},
    "step": {"step_size": 3, "gamma": 0.2},
    "exponential": {"rate": 0.5, "decay_steps": 7},
    "cosine": {k: v for k, v in COSINE_CFG.items() if k != "name"},
    "reduce_on_plateau": {"monitor": "val_accuracy", "factor": 0.2, "patience": 3, "min_delta": 0.01,
                          "cooldown": 2, "min_lr": 1e-4, "mode": "max"},
    "warmup": {"warmup_steps": 50, "start_factor": 0.1, "after": COSINE_CFG},
}


def approx(x):
    return pytest.approx(x, rel=1e-13, abs=1e-16)


def test_registry_lists_exactly_the_known_schedules():
    assert set(NAMES) == EXPECTED_NAMES


def test_constant():
    s = SCHEDULES.resolve("constant")
    assert [s(0.3, step, epoch) for step, epoch in [(0, 0), (1, 0), (1000, 7)]] == [0.3, 0.3, 0.3]


# -- the formula of section 10.2.1 ---------------------------------------------------------
def test_time_decay_formula_of_the_notes():
    s = SCHEDULES.resolve({"name": "decay", "decay": 0.5})
    # lr = lr0 * 1/(1 + decay*iteration), iteration = updates made so far
    assert s(0.1, 0, 0) == approx(0.1)  # 0.1 / 1
    assert s(0.1, 1, 0) == approx(0.1 / 1.5)  # 0.0666...
    assert s(0.1, 10, 3) == approx(0.1 / 6.0)  # 0.01666...; the epoch plays no part
    assert s(0.1, 1, 0) == approx(0.066666666666666666)
    assert s(0.1, 10, 0) == approx(0.016666666666666666)
    assert SCHEDULES.resolve({"name": "decay", "decay": 0})(0.1, 500, 9) == 0.1


def test_step_decay():
    s = SCHEDULES.resolve({"name": "step", "step_size": 3, "gamma": 0.5})
    # lr0 * gamma^(epoch // step_size); the update count plays no part
    expected = {0: 0.8, 2: 0.8, 3: 0.4, 5: 0.4, 6: 0.2, 9: 0.1, 11: 0.1}
    assert {e: s(0.8, 12345, e) for e in expected} == {e: approx(v) for e, v in expected.items()}


def test_exponential_decay():
    s = SCHEDULES.resolve({"name": "exponential", "rate": 0.5, "decay_steps": 10})
    # lr0 * rate^(step / decay_steps)
    assert s(0.8, 0, 0) == approx(0.8)
    assert s(0.8, 5, 0) == approx(0.8 * math.sqrt(0.5))
    assert s(0.8, 10, 0) == approx(0.4)
    assert s(0.8, 20, 4) == approx(0.2)
    assert s(0.8, 15, 0) == approx(0.8 * 0.5 * math.sqrt(0.5))


# -- cosine annealing -------------------------------------------------------------------------
def _cos(lr0, lr_min, t, period):
    # Loshchilov & Hutter 2017: lr_min + (lr0 - lr_min)/2 * (1 + cos(pi t/T))
    return lr_min + 0.5 * (lr0 - lr_min) * (1.0 + math.cos(math.pi * t / period))


def test_cosine_without_restarts():
    s = SCHEDULES.resolve({"name": "cosine", "t_max": 10, "lr_min": 0.01})
    assert s(0.1, 0, 0) == approx(0.1)
    assert s(0.1, 0, 5) == approx(0.055)  # (lr0 + lr_min)/2 = (0.1 + 0.01)/2
    assert s(0.1, 0, 10) == approx(0.01)
    assert s(0.1, 0, 11) == approx(0.01) and s(0.1, 0, 100) == approx(0.01)
    # a quarter of the way: 0.01 + 0.045 * (1 + sqrt(2)/2)
    s4 = SCHEDULES.resolve({"name": "cosine", "t_max": 4, "lr_min": 0.01})
    assert s4(0.1, 0, 1) == approx(0.01 + 0.045 * (1 + math.sqrt(2) / 2))
    # monotone non-increasing over the period
    values = [s(0.1, 0, e) for e in range(12)]
    assert all(a >= b for a, b in pairwise(values))


def test_cosine_warm_restarts_with_t_mult_2():
    t_max, lr0, lr_min = 2, 0.1, 0.0
    s = SCHEDULES.resolve({"name": "cosine", "t_max": t_max, "lr_min": lr_min, "restarts": True, "t_mult": 2})
    # periods 2, 4, 8, 16 start at epochs 0, 2, 6, 14: each start is lr0 again
    for start in (0, 2, 6, 14, 30):
        assert s(lr0, 0, start) == approx(lr0), start
    # middle of each period is lr0/2: epochs 1 (1 of 2), 4 (2 of 4), 10 (4 of 8), 22 (8 of 16)
    for mid in (1, 4, 10, 22):
        assert s(lr0, 0, mid) == approx(0.05), mid
    assert s(lr0, 0, 5) == approx(0.05 * (1 + math.cos(3 * math.pi / 4)))  # 3 of 4
    assert s(lr0, 0, 13) == approx(0.05 * (1 + math.cos(7 * math.pi / 8)))  # 7 of 8
    # t_mult = 1: plain period t_max
    s1 = SCHEDULES.resolve({"name": "cosine", "t_max": 3, "lr_min": 0.02, "restarts": True})
    for epoch in range(10):
        assert s1(lr0, 0, epoch) == approx(_cos(lr0, 0.02, epoch % 3, 3)), epoch


# -- warm-up ----------------------------------------------------------------------------------
def test_warmup_linear_then_constant():
    # Convention of nncore (the docstring: "over warmup_steps updates"): update k = 0..W-1 gets
    # lr0 * (f + (1 - f) * (k + 1)/W), equal increments of lr0*(1 - f)/W; the last warm-up update
    # (k = W-1) is at the full rate, so no update is made with a zero rate when f = 0.
    s = SCHEDULES.resolve({"name": "warmup", "warmup_steps": 4, "start_factor": 0.2})
    lr0 = 0.5
    # f = 0.2, W = 4: factors 0.4, 0.6, 0.8, 1.0 -> 0.2, 0.3, 0.4, 0.5
    assert [s(lr0, k, 0) for k in range(4)] == [approx(0.2), approx(0.3), approx(0.4), approx(0.5)]
    assert s(lr0, 4, 0) == approx(0.5) and s(lr0, 1000, 9) == approx(0.5)
    default = SCHEDULES.resolve("warmup")  # W = 100, f = 0
    assert default(1.0, 0, 0) == approx(0.01) and default(1.0, 49, 0) == approx(0.5)
    assert default(1.0, 99, 0) == approx(1.0) and default(1.0, 100, 0) == approx(1.0)


def test_warmup_wraps_cosine():
    s = SCHEDULES.resolve({"name": "warmup", "warmup_steps": 10, "start_factor": 0.5,
                           "after": {"name": "cosine", "t_max": 4}})
    lr0 = 0.8
    # during warm-up: cosine value times the warm-up factor; step 4 -> 0.5 + 0.5 * 5/10 = 0.75,
    # epoch 2 of 4 -> cosine 0.4
    assert s(lr0, 4, 2) == approx(0.3)
    assert s(lr0, 0, 0) == approx(0.8 * 0.55)  # 0.5 + 0.5 * 1/10
    # after warm-up: the cosine alone: epoch 1 -> 0.4 * (1 + sqrt(2)/2), epoch 4 -> 0
    assert s(lr0, 20, 1) == approx(0.4 * (1 + math.sqrt(2) / 2))
    assert s(lr0, 20, 4) == approx(0.0)
    assert s.unit == "step"


def test_warmup_forwards_plateau_events_and_state():
    cfg = {"name": "warmup", "warmup_steps": 2,
           "after": {"name": "reduce_on_plateau", "patience": 0, "min_delta": 0.0}}
    s = SCHEDULES.resolve(cfg)
    for v in (1.0, 1.0):  # one epoch without improvement, patience 0 -> halve
        s.on_epoch_end({"val_loss": v})
    assert s(1.0, 5, 2) == approx(0.5)
    assert s(1.0, 0, 2) == approx(0.25)  # warm-up factor 0.5 on top of the plateau's 0.5
    fresh = SCHEDULES.resolve(cfg)
    fresh.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert fresh(1.0, 5, 2) == approx(0.5)


def test_warmup_cannot_wrap_warmup():
    with pytest.raises(ValueError, match="warmup"):
        SCHEDULES.resolve({"name": "warmup", "after": {"name": "warmup"}})


# -- reduce on plateau --------------------------------------------------------------------------
# Semantics (as PyTorch's ReduceLROnPlateau, mode "abs"): an epoch improves when
# value < best - min_delta (strictly); `patience` epochs without improvement are tolerated and the
# factor is applied at the (patience + 1)-th; the count then restarts; the `cooldown` epochs right
# after a reduction are not counted; the rate never goes below min_lr.
def _lrs(schedule, values, lr0=1.0, key="val_loss"):
    out = []
    for v in values:
        schedule.on_epoch_end({key: v, "loss": 0.0})
        out.append(schedule(lr0, 0, len(out)))
    return out


def _plateau(**kw):
    return SCHEDULES.resolve({"name": "reduce_on_plateau", "factor": 0.5, "min_delta": 0.0, **kw})


def test_plateau_patience():
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8]
    # e0 best 1.0; e1 best 0.9; e2, e3 bad (1, 2 <= patience); e4 bad 3 -> halve, count restarts;
    # e5 bad 1; e6 best 0.8; e7, e8 bad 1, 2; e9 bad 3 -> halve again
    expected = [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert _lrs(_plateau(patience=2), metrics) == expected
    # patience 0: every epoch without improvement halves
    assert _lrs(_plateau(patience=0), [1.0, 1.0, 1.0, 0.5, 0.5]) == [1, 0.5, 0.25, 0.25, 0.125]


def test_plateau_min_delta():
    metrics = [1.0, 0.75, 0.8, 0.7, 0.7, 0.4]
    # min_delta 0.25: e1 0.75 is not < 1.0 - 0.25 (strict) -> bad 1; e2 bad 2 > 1 -> halve;
    # e3 0.7 < 0.75 -> best 0.7; e4 bad 1; e5 0.4 < 0.45 -> best
    assert _lrs(_plateau(patience=1, min_delta=0.25), metrics) == [1, 1, 0.5, 0.5, 0.5, 0.5]
    # min_delta 0: e1, e3, e5 improve, e2, e4 are single bad epochs -> never reduced
    assert _lrs(_plateau(patience=1), metrics) == [1] * 6


def test_plateau_cooldown():
    # patience 0, constant metric. cooldown 2: reduce at e1, e2 and e3 are cooldown (not counted),
    # e4 is bad -> reduce, e5 e6 cooldown, e7 reduce
    flat = [1.0] * 8
    assert _lrs(_plateau(patience=0, cooldown=2), flat) == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    # cooldown 1: one epoch skipped after each reduction: reduce at e1, e3, e5, e7
    assert _lrs(_plateau(patience=0, cooldown=1), flat) == [1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625]


def test_plateau_cooldown_zero_restarts_the_count():
    # cooldown 0 after a reduction: the count restarts from 0 (Keras issue #3991 reduced every epoch)
    assert _lrs(_plateau(patience=1), [1.0] * 7) == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_plateau_min_lr():
    s = _plateau(patience=0, min_lr=0.3)
    # 1 -> 0.5 -> 0.25 clamped to 0.3 -> stays 0.3
    assert _lrs(s, [1.0] * 5) == [1, 0.5, 0.3, 0.3, 0.3]
    # min_lr above lr0 never raises the rate above lr0
    assert s(0.2, 0, 0) == approx(0.2)


def test_plateau_mode_max():
    s = _plateau(monitor="val_accuracy", patience=1, mode="max")
    # e0 best 0.5; e1 best 0.6; e2 0.6 bad 1; e3 0.55 bad 2 -> halve; e4 0.7 best
    assert _lrs(s, [0.5, 0.6, 0.6, 0.55, 0.7], key="val_accuracy") == [1, 1, 1, 0.5, 0.5]


def test_plateau_state_dict_resumes_the_same_decisions():
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8]
    expected = [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25]  # as in test_plateau_patience
    for split in (1, 3, 4, 7):  # before/inside a waiting run, right after a reduction
        first = _plateau(patience=2)
        head = _lrs(first, metrics[:split])
        state = json.loads(json.dumps(first.state_dict()))
        resumed = _plateau(patience=2)
        resumed.load_state_dict(state)
        tail = _lrs(resumed, metrics[split:])
        assert head + tail == expected, split
    # state saved inside a cooldown resumes identically to an uninterrupted run
    flat = [1.0] * 9
    straight = _lrs(_plateau(patience=0, cooldown=3), flat)
    first = _plateau(patience=0, cooldown=3)
    head = _lrs(first, flat[:3])
    resumed = _plateau(patience=0, cooldown=3)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + _lrs(resumed, flat[3:]) == straight


def test_plateau_fresh_state_from_before_the_first_epoch():
    # best = inf survives a JSON round trip of the state
    resumed = _plateau(patience=0)
    resumed.load_state_dict(json.loads(json.dumps(_plateau(patience=0).state_dict())))
    assert _lrs(resumed, [5.0, 5.0]) == [1, 0.5]


def test_plateau_missing_metric_names_it_and_lists_the_available():
    s = SCHEDULES.resolve("reduce_on_plateau")
    with pytest.raises(ValueError) as info:
        s.on_epoch_end({"loss": 0.3, "val_accuracy": 0.9})
    msg = str(info.value)
    assert "'val_loss'" in msg and "loss" in msg.replace("'val_loss'", "") and "val_accuracy" in msg


# -- config and validation --------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    s = SCHEDULES.resolve({"name": name, **NON_DEFAULT[name]})
    cfg = s.get_config()
    assert cfg == {"name": name, **NON_DEFAULT[name]}
    again = SCHEDULES.resolve(json.loads(json.dumps(cfg)))
    assert type(again) is type(s) and again.get_config() == cfg
    assert type(s).from_config(cfg).get_config() == cfg


def test_warmup_config_fills_in_the_wrapped_defaults():
    s = SCHEDULES.resolve({"name": "warmup", "after": {"name": "cosine", "t_max": 9}})
    assert s.get_config()["after"] == {"name": "cosine", "t_max": 9, "lr_min": 0.0, "restarts": False, "t_mult": 1}


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        SCHEDULES.resolve("polynomial")
    assert "'polynomial'" in str(info.value) and all(n in str(info.value) for n in EXPECTED_NAMES)


@pytest.mark.parametrize("cfg, quoted", [
    ({"name": "decay", "decay": -1}, "got -1"),
    ({"name": "step", "gamma": 0}, "got 0"),
    ({"name": "step", "gamma": 1.5}, "got 1.5"),
    ({"name": "step", "step_size": 0}, "got 0"),
    ({"name": "exponential", "rate": 0}, "got 0"),
    ({"name": "cosine", "t_max": 0}, "got 0"),
    ({"name": "cosine", "t_mult": 0}, "got 0"),
    ({"name": "cosine", "restarts": "yes"}, "got 'yes'"),
    ({"name": "reduce_on_plateau", "factor": 1.0}, "got 1.0"),
    ({"name": "reduce_on_plateau", "patience": -1}, "got -1"),
    ({"name": "reduce_on_plateau", "mode": "avg"}, "got 'avg'"),
    ({"name": "warmup", "warmup_steps": 0}, "got 0"),
    ({"name": "warmup", "start_factor": 2}, "got 2"),
])
def test_bad_values_raise_quoting_the_value(cfg, quoted):
    key = next(k for k in cfg if k != "name")
    with pytest.raises(ValueError) as info:
        SCHEDULES.resolve(cfg)
    assert key in str(info.value) and quoted in str(info.value)
