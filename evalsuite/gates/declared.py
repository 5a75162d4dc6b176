"""Where gates are declared: ``pyproject.toml`` or the training config YAML.

``pyproject.toml`` (found from the working directory upwards)::

    [tool.evalsuite]
    gates = ["squad.exact_match >= 60", "uppercase-echo.accuracy: -2%"]
    baseline = "baselines/main.json"   # optional, relative to pyproject.toml
    alpha = 0.05                       # optional

or, as a table keyed by metric (values are the comparison; a list holds several)::

    [tool.evalsuite.gates]
    "squad.exact_match" = ">= 60"
    "squad.f1" = ["-1.5", ">= 70"]
    "runaway-turns.rate" = ["<= 0.02", "+0.01"]

The config YAML (``--config config.yaml``) takes the same list or mapping under a top-level
``gates:`` key. ``--gate`` on the command line overrides declared gates on the same metric and of
the same family (absolute or regression); see :func:`evalsuite.gates.expr.merge_gates`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.config.yaml_lines import load_yaml
from evalsuite.errors import EvalsuiteError
from evalsuite.gates.expr import OPS, Gate, parse_gate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


Location = tuple[Path, int | None]  # file, 1-based line when known


@dataclass
class GateConfig:
    """Declared gates plus optional baseline path and alpha, and where they were read from (``locations``: gate
    expression -> file and line, for annotations)."""

    gates: list[Gate] = field(default_factory=list)
    baseline: Path | None = None
    alpha: float | None = None
    source: Path | None = None
    locations: dict[str, Location] = field(default_factory=dict)


def _combine(metric: str, comparison: str) -> str:
    text = comparison.strip()
    if text.startswith(tuple(op[0] for op in OPS)):
        return f"{metric} {text}"
    return f"{metric}{text}" if text.startswith(":") else f"{metric}: {text}"


Entry = tuple[str, str, tuple[str | int, ...]]  # expression, where (for errors), key path under ``gates``


def gate_entries(value: Any, where: str) -> list[Entry]:
    """Normalise a list or table of gates to ``(expression, where, key path)`` triples."""
    if isinstance(value, list):
        out: list[Entry] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise EvalsuiteError(f'{where}[{i}]: expected a gate string like "squad.f1 >= 60", '
                                     f"got {item!r}")
            out.append((item, f"{where}[{i}]", (i,)))
        return out
    if isinstance(value, dict):
        return _table_entries(value, where, prefix="", path=())
    raise EvalsuiteError(f"{where}: expected a list of gate strings or a table keyed by metric, "
                         f"got {value!r}")


def _table_entries(table: dict[str, Any], where: str, prefix: str, path: tuple[str, ...]) -> list[Entry]:
    out: list[Entry] = []
    for key, val in table.items():
        metric, here, keys = f"{prefix}{key}", f"{where}.{key}", (*path, key)
        if isinstance(val, dict):  # unquoted dotted TOML keys: squad.f1 = "..." nests a table
            out += _table_entries(val, where, prefix=f"{metric}.", path=keys)
        elif isinstance(val, str):
            out.append((_combine(metric, val), here, keys))
        elif isinstance(val, list) and all(isinstance(v, str) for v in val):
            out += [(_combine(metric, v), f"{here}[{i}]", (*keys, i)) for i, v in enumerate(val)]
        else:
            raise EvalsuiteError(f'{here}: expected the comparison as a string such as ">= 60" or "-2%", '
                                 f"got {val!r}")
    return out


def _parse_all(entries: list[Entry]) -> list[Gate]:
    gates = []
    for expr, where, _ in entries:
        try:
            gates.append(parse_gate(expr))
        except EvalsuiteError as exc:
            raise EvalsuiteError(f"{where}: {exc}") from None
    return gates


def find_pyproject(start: Path) -> Path | None:
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def toml_line(text: str, entry: Entry) -> int | None:
    """The line of a gate in TOML text (tomllib keeps no positions): the quoted expression of a list item, else the
    quoted comparison on or after the line of its metric key, else that key's line."""
    lines = text.splitlines()
    expr, _, path = entry
    quoted = (f'"{expr}"', f"'{expr}'")
    if len(path) == 1 and isinstance(path[0], int):
        return next((i for i, line in enumerate(lines, 1) if any(q in line for q in quoted)), None)
    metric = ".".join(str(k) for k in path if isinstance(k, str))  # "squad.f1" = ... or squad.f1 = ...
    key_line = next((i for i, line in enumerate(lines, 1)
                     if re.match(rf"""\s*["']?{re.escape(metric)}["']?\s*=""", line)), None)
    if key_line is None:
        return None
    comparison = expr[len(metric):].strip().lstrip(":").strip()
    for i in range(key_line, min(len(lines), key_line + 20) + 1):
        if comparison and re.search(rf"""["']\s*:?\s*{re.escape(comparison)}\s*["']""", lines[i - 1]):
            return i
    return key_line


def load_pyproject(path: Path) -> GateConfig:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalsuiteError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise EvalsuiteError(f"{path}: invalid TOML: {exc}") from None
    section = data.get("tool", {}).get("evalsuite", {})
    if not isinstance(section, dict):
        raise EvalsuiteError(f"{path}: tool.evalsuite: expected a table")
    config = GateConfig(source=path)
    if "gates" in section:
        entries = gate_entries(section["gates"], f"{path}: tool.evalsuite.gates")
        config.gates = _parse_all(entries)
        config.locations = {e[0]: (path, toml_line(text, e)) for e in entries}
    if "baseline" in section:
        if not isinstance(section["baseline"], str):
            raise EvalsuiteError(f"{path}: tool.evalsuite.baseline: expected a path string")
        config.baseline = path.parent / section["baseline"]
    if "alpha" in section:
        config.alpha = _alpha(section["alpha"], f"{path}: tool.evalsuite.alpha")
    return config


def _alpha(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise EvalsuiteError(f"{where}: expected a significance level between 0 and 1, got {value!r}")
    return float(value)


def load_yaml_config(path: Path) -> GateConfig:
    """Gates from the top-level ``gates:`` key of a training config YAML (line numbers in errors)."""
    data, lines = load_yaml(path)
    config = GateConfig(source=path)
    if not isinstance(data, dict) or data.get("gates") is None:
        return config
    line = lines.get(("gates",))
    where = f"{path}:{line}: gates" if line else f"{path}: gates"
    entries = gate_entries(data["gates"], where)
    if isinstance(data["gates"], list):  # point each list item at its own line
        entries = [(expr, f"{path}:{lines.get(('gates', i), line)}: gates[{i}]", keys)
                   for i, (expr, _, keys) in enumerate(entries)]
    config.gates = _parse_all(entries)
    config.locations = {expr: (path, lines.get(("gates", *keys), line)) for expr, _, keys in entries}
    return config


@dataclass
class ResolvedGates:
    """Everything ``evaluate_gates`` needs, after declared gates, overrides and defaults; ``locations`` says where
    each declared gate that is still in force was written (``--gate`` ones have none)."""

    gates: list[Gate]
    baseline_path: Path | None
    alpha: float
    locations: dict[str, Location] = field(default_factory=dict)


def resolve_gates(cli_gates: list[str], config_path: Path | None = None, baseline_path: Path | None = None,
                  alpha: float | None = None, cwd: Path | None = None) -> ResolvedGates:
    """Merge declared gates with ``--gate`` overrides; pick the baseline and alpha.

    The one place the CLI and the pytest plugin resolve gates, so both apply the same ones: the
    baseline is the explicit one, else ``tool.evalsuite.baseline`` when a regression gate needs it;
    alpha is the explicit one, else ``tool.evalsuite.alpha``, else 0.05.
    """
    from evalsuite.gates.expr import merge_gates, parse_gates

    config = declared_gates(config_path, cwd)
    gates = merge_gates(config.gates, parse_gates(cli_gates, "--gate"))
    if baseline_path is None and any(g.needs_baseline for g in gates):
        baseline_path = config.baseline
    if alpha is None:
        alpha = config.alpha if config.alpha is not None else 0.05
    elif not 0 < alpha < 1:
        raise EvalsuiteError(f"--alpha: expected a significance level between 0 and 1, got {alpha}")
    declared = [g for g in gates if any(g is d for d in config.gates)]
    locations = {g.expr: config.locations[g.expr] for g in declared if g.expr in config.locations}
    return ResolvedGates(gates, baseline_path, alpha, locations)


def declared_gates(config_path: Path | None = None, cwd: Path | None = None) -> GateConfig:
    """The YAML config when given (``.toml`` is read as a pyproject), else the nearest pyproject."""
    if config_path is not None:
        return load_pyproject(config_path) if config_path.suffix == ".toml" else load_yaml_config(config_path)
    pyproject = find_pyproject(cwd or Path.cwd())
    return load_pyproject(pyproject) if pyproject else GateConfig()
