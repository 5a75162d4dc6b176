"""Quality gates: a tiny language, parsed once, used by ``evalsuite gate`` and the pytest plugin.

Grammar (whitespace free-form)::

    gate       := METRIC OP NUMBER            absolute:   squad.exact_match >= 60
                | METRIC ":" [+|-] NUMBER [%] regression: uppercase-echo.accuracy: -2%   squad.f1: -1.5
    METRIC     := BATTERY "." NAME            (the battery is everything before the last dot)
    OP         := >= | > | <= | < | ==

A regression tolerance is the worsening allowed against a baseline: relative to the baseline value
with ``%``, else in metric units. Worsening means a drop for higher-is-better metrics and a rise for
lower-is-better ones (``runaway-turns.rate: +0.01``); the sign may be left out but must not
contradict the metric's direction. One class per comparison kind: :class:`Threshold`,
:class:`AbsoluteDrop`, :class:`RelativeDrop`. Evaluation lives in :mod:`evalsuite.gates.evaluate`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from evalsuite.errors import EvalsuiteError

OPS = (">=", "<=", "==", ">", "<")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_HEAD = re.compile(r"^\s*(?P<ref>[^\s:<>=!]+)\s*(?P<rest>.*?)\s*$")
_ABSOLUTE = re.compile(rf"^(?P<op>>=|<=|==|>|<)\s*(?P<num>[-+]?{_NUMBER})$")
_REGRESSION = re.compile(rf"^:\s*(?P<sign>[-+])?\s*(?P<num>{_NUMBER})\s*(?P<pct>%)?$")
_OP_WORDS = "an operator (>=, >, <=, <, ==) and a number, or a regression tolerance like \": -2%\""


def _compare(op: str, left: float, right: float) -> bool:
    return {">=": left >= right, "<=": left <= right, "==": left == right,
            ">": left > right, "<": left < right}[op]


def _fmt(x: float) -> str:
    return f"{x:.6g}"


@dataclass(frozen=True)
class Threshold:
    """Absolute: the metric must satisfy ``value OP threshold`` (no baseline needed)."""

    expr: str
    battery: str
    metric: str
    op: str
    threshold: float

    needs_baseline = False

    def holds(self, value: float) -> bool:
        return _compare(self.op, value, self.threshold)

    def describe(self) -> str:
        return f"{self.battery}.{self.metric} {self.op} {_fmt(self.threshold)}"


@dataclass(frozen=True)
class AbsoluteDrop:
    """Regression: worsening vs the baseline of at most ``tolerance`` metric units."""

    expr: str
    battery: str
    metric: str
    tolerance: float
    sign: str | None = None

    needs_baseline = True

    def allowed(self, baseline_value: float) -> float:
        return self.tolerance

    def describe(self) -> str:
        return f"{self.battery}.{self.metric}: {self.sign or ''}{_fmt(self.tolerance)}"


@dataclass(frozen=True)
class RelativeDrop:
    """Regression: worsening vs the baseline of at most ``percent`` % of the baseline value."""

    expr: str
    battery: str
    metric: str
    percent: float
    sign: str | None = None

    needs_baseline = True

    def allowed(self, baseline_value: float) -> float:
        return abs(baseline_value) * self.percent / 100.0

    def describe(self) -> str:
        return f"{self.battery}.{self.metric}: {self.sign or ''}{_fmt(self.percent)}%"


Gate = Threshold | AbsoluteDrop | RelativeDrop


def _finite(expr: str, text: str) -> float:
    """A gate's number; 1e999 reads as infinity, and a gate against infinity always passes (or never does)."""
    value = float(text)
    if not math.isfinite(value):
        raise EvalsuiteError(f'gate "{expr}": {text} is not a finite number (it reads as {value}, which makes the '
                             "gate always pass or always fail)")
    return value


def parse_gate(expr: str) -> Gate:
    """Parse one gate expression; the error quotes it and says what was expected where."""
    if not isinstance(expr, str):
        raise EvalsuiteError(f"gate {expr!r}: expected a string like \"squad.f1 >= 60\"")
    head = _HEAD.match(expr)
    if not head or not expr.strip():
        raise EvalsuiteError(f'gate "{expr}": expected BATTERY.METRIC followed by {_OP_WORDS}')
    ref, rest = head["ref"], head["rest"]
    battery, dot, metric = ref.rpartition(".")
    if not dot or not battery or not metric:
        raise EvalsuiteError(f'gate "{expr}": expected BATTERY.METRIC (like squad.f1), got "{ref}"')
    if m := _ABSOLUTE.match(rest):
        return Threshold(expr, battery, metric, m["op"], _finite(expr, m["num"]))
    if m := _REGRESSION.match(rest):
        value = _finite(expr, m["num"])
        if m["pct"]:
            return RelativeDrop(expr, battery, metric, value, m["sign"])
        return AbsoluteDrop(expr, battery, metric, value, m["sign"])
    if rest.startswith(":"):
        raise EvalsuiteError(f'gate "{expr}": expected a tolerance like -2% or -1.5 after ":", '
                             f'got "{rest[1:].strip()}"')
    raise EvalsuiteError(f'gate "{expr}": expected {_OP_WORDS} after "{ref}", got "{rest}"')


def parse_gates(exprs: list[str], where: str | None = None) -> list[Gate]:
    """Parse a list; ``where`` (e.g. ``pyproject.toml: tool.evalsuite.gates``) prefixes errors."""
    out = []
    for i, expr in enumerate(exprs):
        try:
            out.append(parse_gate(expr))
        except EvalsuiteError as exc:
            raise EvalsuiteError(f"{where}[{i}]: {exc}" if where else str(exc)) from None
    return out


def merge_gates(declared: list[Gate], overrides: list[Gate]) -> list[Gate]:
    """``--gate`` overrides replace declared gates on the same metric and of the same family
    (absolute or regression); the rest of the declared gates stay, new ones are appended."""

    def key(g: Gate) -> tuple[str, str, bool]:
        return g.battery, g.metric, g.needs_baseline

    replaced = {key(g) for g in overrides}
    return [g for g in declared if key(g) not in replaced] + overrides
