"""The allowed values of every config field, declared next to the field, checked before anything runs.

Each config dataclass (a model's `Config`, `TrainConfig`, `EvalConfig`) declares a class attribute
`ranges`: field name -> rule, one rule for every field (tests/test_grid_checks.py checks that no
field is left out, so a new model cannot forget one). A rule is

    "[1, inf)"  "(0, inf)"  "[0, 1)"  "[0, 1]"   an interval (brackets: closed, parentheses: open)
    ("code", "paper")                          a closed set of choices
    None                                       any value of the field's type (checked elsewhere, e.g.
                                               MoMoK's `decision`, whose choices depend on the data)

For a tuple field (EvalConfig.hits_at) an interval applies to every element. The grid reader
(mmkgbench.grid) checks each key it reads with `check_field`, so the error names the grid file and
the key; `check_config` runs in each config's `__post_init__`, so the Python API is checked too.
"""
from __future__ import annotations

import math
from dataclasses import fields


def parse_interval(rule: str) -> tuple[float, float, bool, bool]:
    """'[1, inf)' -> (1.0, inf, True, False): low, high, low closed, high closed."""
    text = rule.strip()
    if len(text) < 5 or text[0] not in "[(" or text[-1] not in "])" or "," not in text:
        raise ValueError(f"not an interval: {rule!r} (write e.g. '[0, 1)' or '(0, inf)')")
    lo, hi = (float(x) for x in text[1:-1].split(","))
    return lo, hi, text[0] == "[", text[-1] == "]"


def in_interval(value, rule: str) -> bool:
    lo, hi, lo_closed, hi_closed = parse_interval(rule)
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= lo if lo_closed else value > lo
    below = value <= hi if hi_closed else value < hi
    return above and below


def violation(rule, value) -> str | None:
    """Why `value` breaks `rule`, or None when it is allowed."""
    if rule is None:
        return None
    if isinstance(rule, tuple):
        return None if value in rule else f"must be one of {list(rule)}, got {value!r}"
    values = value if isinstance(value, (tuple, list)) else (value,)
    if isinstance(value, (tuple, list)) and not value:
        return "must not be empty"
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number in {rule}"
        if not in_interval(v, rule):
            return f"must be in {rule}" if len(values) == 1 else f"every element must be in {rule} ({v!r} is not)"
    return None


def check_field(cls, key: str, value) -> None:
    """ValueError naming the field when `value` is outside what `cls.ranges[key]` allows."""
    rule = getattr(cls, "ranges", {}).get(key)
    why = violation(rule, value)
    if why:
        raise ValueError(f"{key} {why}" if isinstance(rule, tuple) else f"{key} = {value!r} {why}")


def check_config(cfg) -> None:
    """Check every field of a config instance against its class's `ranges` (ValueError naming the class)."""
    cls = type(cfg)
    for f in fields(cfg):
        try:
            check_field(cls, f.name, getattr(cfg, f.name))
        except ValueError as err:
            raise ValueError(f"{cls.__name__}: {err}") from None
