"""Results files written by hand, for tests whose expected values must not come from the code under test.

A row is ``(battery, case, column, output, passed)`` plus optional ``finish``, ``score`` and ``details``; the metric
rows are each column's plain pass rate (``accuracy``), summed here, with no interval. The JSON is what the runner
writes (schema_version 2), so the file goes through the same reader as a real one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]  # battery, case, column, output, passed[, finish[, score[, details]]]


def sample(battery: str, case: str, column: str, output: str, passed: bool, finish: str = "eos",
           score: float | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"battery": battery, "case": case, "adapter": column, "prompt": f"prompt of {case}", "output": output,
            "expected": None, "finish_reason": finish, "tokens": len(output.split()) + 1, "latency_s": 0.01,
            "scorer": {"name": "exact", "args": {}}, "passed": passed,
            "score": float(passed) if score is None else score, "details": details or {}}


def results_dict(columns: Sequence[tuple[str, str]], rows: Sequence[Row], base_model: str = "tiny") -> dict[str, Any]:
    """``columns``: (name, kind) pairs; kind ``base`` for the base model's column."""
    samples = [sample(*row) for row in rows]
    metrics = []
    for battery in dict.fromkeys(s["battery"] for s in samples):
        for name, _kind in columns:
            mine = [s for s in samples if s["battery"] == battery and s["adapter"] == name]
            if mine:
                metrics.append({"battery": battery, "adapter": name, "name": "accuracy",
                                "value": sum(s["passed"] for s in mine) / len(mine), "ci_low": None, "ci_high": None,
                                "n": len(mine), "method": "none", "source": "passed", "scale": 1.0,
                                "higher_is_better": True})
    adapters = [{"name": name, "kind": kind, "base_model": base_model,
                 "path": None if kind == "base" else f"runs/{name}", "weights_sha256": None,
                 "manifest_digest": None, "manifest": None} for name, kind in columns]
    return {"schema_version": 2, "created": "2026-01-01T00:00:00+00:00", "evalsuite_version": "0.1.0",
            "engine": {"name": "hf", "seed": 0, "max_new_tokens": 64}, "adapters": adapters, "samples": samples,
            "metrics": metrics}


def write(path: Path, columns: Sequence[tuple[str, str]], rows: Sequence[Row], **extra: Any) -> Path:
    data = results_dict(columns, rows)
    data.update(extra)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def flips(battery: str, cand: str, base: str, lost: int, gained: int, same_pass: int = 0,
          same_fail: int = 0) -> list[Row]:
    """Paired rows for two columns: ``lost`` cases pass on ``base`` and fail on ``cand``, ``gained`` the reverse,
    and some cases with the same verdict on both."""
    kinds = [(True, False)] * lost + [(False, True)] * gained + [(True, True)] * same_pass + \
        [(False, False)] * same_fail
    rows: list[Row] = []
    for i, (b, c) in enumerate(kinds):
        rows += [(battery, f"c{i:02d}", base, "right" if b else "wrong", b),
                 (battery, f"c{i:02d}", cand, "right" if c else "wrong", c)]
    return rows
