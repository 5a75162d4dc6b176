"""Validation of results files, kept apart from the dataclasses so both stay short.

Every check names the file and the JSON path of the field, e.g.
``results.json: samples[12].finish_reason: expected one of eos, stop-string, max-tokens, new-turn,
not-run, got "foo"``. Unknown keys are ignored so older readers tolerate additive changes.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NoReturn

from evalsuite.errors import EvalsuiteError, located
from evalsuite.results.consistency import check_consistency
from evalsuite.results.judgements import JUDGEMENTS_VERSION, REASONS, SIDES, Judgement, PairVerdict
from evalsuite.results.schema import (
    ADAPTER_KINDS,
    CI_METHODS,
    FINISH_REASONS,
    METRIC_SOURCES,
    NOT_RUN,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    SESSION_VERSION,
    AdapterInfo,
    EngineInfo,
    Metric,
    Results,
    Sample,
    ScorerRef,
)

_MISSING = object()
_ENGINE_FIXED = ("name", "seed", "max_new_tokens")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class Validator:
    """Typed field access over parsed JSON that raises one located error on the first problem."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> NoReturn:
        raise EvalsuiteError(located(self.path, None, where or None, message))

    def _get(self, d: dict[str, Any], key: str, where: str, default: Any) -> Any:
        value = d.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                self.fail(f"{where}.{key}" if where else key, "missing")
            return default
        return value

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {_show(value)}")
        return value

    def list_(self, d: dict[str, Any], key: str, where: str = "") -> list[Any]:
        value = self._get(d, key, where, _MISSING)
        if not isinstance(value, list):
            self.fail(f"{where}.{key}" if where else key, f"expected a list, got {_show(value)}")
        return value

    def str_(self, d: dict[str, Any], key: str, where: str, *, nullable: bool = False,
             default: Any = _MISSING) -> Any:
        value = self._get(d, key, where, default)
        if value is None and (nullable or default is None):
            return None
        if not isinstance(value, str):
            self.fail(f"{where}.{key}" if where else key, f"expected a string, got {_show(value)}")
        return value

    def name(self, d: dict[str, Any], key: str, where: str) -> str:
        value = self.str_(d, key, where)
        if not value.strip():
            self.fail(f"{where}.{key}" if where else key, "must not be empty")
        return str(value)

    def int_(self, d: dict[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
        value = self._get(d, key, where, _MISSING)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{where}.{key}" if where else key,
                      f"expected an integer >= {minimum}, got {_show(value)}")
        return value

    def num(self, d: dict[str, Any], key: str, where: str, *, nullable: bool = False,
            default: Any = _MISSING) -> Any:
        value = self._get(d, key, where, default)
        if value is None and nullable:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            self.fail(f"{where}.{key}" if where else key, f"expected a finite number, got {_show(value)}")
        return float(value)

    def nonnegative(self, d: dict[str, Any], key: str, where: str) -> float:
        value = self.num(d, key, where)
        if value < 0:
            self.fail(f"{where}.{key}", f"expected a number >= 0, got {_show(d[key])}")
        return float(value)

    def bool_(self, d: dict[str, Any], key: str, where: str, *, default: Any = _MISSING) -> bool:
        value = self._get(d, key, where, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}" if where else key, f"expected true or false, got {_show(value)}")
        return value

    def enum(self, d: dict[str, Any], key: str, where: str, choices: tuple[str, ...], *,
             nullable: bool = False) -> Any:
        value = self._get(d, key, where, None if nullable else _MISSING)
        if value is None and nullable:
            return None
        if value not in choices:
            self.fail(f"{where}.{key}" if where else key,
                      f"expected one of {', '.join(choices)}, got {_show(value)}")
        return value

    def dict_(self, d: dict[str, Any], key: str, where: str, *, nullable: bool = False) -> Any:
        value = self._get(d, key, where, None if nullable else {})
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            self.fail(f"{where}.{key}" if where else key, f"expected an object, got {_show(value)}")
        return value

    # --- the schema -------------------------------------------------------------------------

    def results(self, data: Any) -> Results:
        top = self.obj(data, "")
        version = self._get(top, "schema_version", "", _MISSING)
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            hint = " (written by a newer evalsuite?)" if isinstance(version, int) and version > SCHEMA_VERSION else ""
            expected = " or ".join(str(v) for v in READABLE_VERSIONS)
            self.fail("schema_version", f"expected {expected}, got {_show(version)}{hint}")
        adapters = [self.adapter(a, f"adapters[{i}]") for i, a in enumerate(self.list_(top, "adapters"))]
        names = self._unique([a.name for a in adapters], "adapters", "name")
        samples = [self.sample(s, f"samples[{i}]", names) for i, s in enumerate(self.list_(top, "samples"))]
        self._unique([(s.battery, s.case, s.adapter) for s in samples], "samples", "(battery, case, adapter)")
        metrics = [self.metric(m, f"metrics[{i}]", names) for i, m in enumerate(self.list_(top, "metrics"))]
        self._unique([(m.battery, m.adapter, m.name) for m in metrics], "metrics", "(battery, adapter, name)")
        results = Results(
            schema_version=SCHEMA_VERSION,
            created=self.str_(top, "created", ""),
            evalsuite_version=self.str_(top, "evalsuite_version", ""),
            engine=self.engine(self._get(top, "engine", "", _MISSING)),
            adapters=adapters, samples=samples, metrics=metrics,
            baseline=self.dict_(top, "baseline", "", nullable=True),
            judgements=self.judgements(top.get("judgements"), names),
            partial=self.partial(top.get("partial")),
        )
        check_consistency(results, self.fail)  # the metrics are what the samples give
        return results

    def partial(self, value: Any) -> dict[str, Any] | None:
        """``partial`` (a run that generated a selection of its planned cases): per battery, planned and ran."""
        if value is None:
            return None
        d = self.obj(value, "partial")
        batteries = self.dict_(d, "batteries", "partial")
        for name, counts in batteries.items():
            where = f"partial.batteries.{name}"
            self.obj(counts, where)
            self.int_(counts, "planned", where, minimum=1)
            self.int_(counts, "ran", where)
        self.str_(d, "selection", "partial", default="")
        return d

    def _unique(self, keys: list[Any], where: str, what: str) -> list[Any]:
        first: dict[Any, int] = {}
        for i, key in enumerate(keys):
            if key in first:
                self.fail(f"{where}[{i}]", f"duplicate {what} {_show(key)}, first at {where}[{first[key]}]")
            first[key] = i
        return keys

    def engine(self, value: Any) -> EngineInfo:
        d = self.obj(value, "engine")
        self.session(d.get("session"))
        return EngineInfo(
            name=self.name(d, "name", "engine"),
            seed=self.int_(d, "seed", "engine", minimum=-(2**63)),
            max_new_tokens=self.int_(d, "max_new_tokens", "engine", minimum=1),
            settings={k: v for k, v in d.items() if k not in _ENGINE_FIXED},
        )

    def section_version(self, version: Any, expected: int, where: str) -> None:
        """An optional section's own version: exactly ``expected``; a larger one names the likely cause."""
        if version != expected:
            newer = isinstance(version, int) and version > expected
            self.fail(where, f"expected {expected}, got {_show(version)}"
                             + (" (written by a newer evalsuite?)" if newer else ""))

    def session(self, value: Any) -> None:
        """``engine.session`` (written by evalsuite.probe.progress), optional: files without it load unchanged."""
        if value is None:
            return
        d = self.obj(value, "engine.session")
        self.section_version(d.get("version"), SESSION_VERSION, "engine.session.version")
        for key in ("load_s", "generate_s", "peak_rss_bytes", "peak_cuda_bytes"):
            self.num(d, key, "engine.session", nullable=True, default=None)

    def adapter(self, value: Any, where: str) -> AdapterInfo:
        d = self.obj(value, where)
        return AdapterInfo(
            name=self.name(d, "name", where),
            kind=self.enum(d, "kind", where, ADAPTER_KINDS),
            base_model=self.str_(d, "base_model", where),
            path=self.str_(d, "path", where, default=None),
            weights_sha256=self.str_(d, "weights_sha256", where, default=None),
            manifest_digest=self.str_(d, "manifest_digest", where, default=None),
            manifest=self.dict_(d, "manifest", where, nullable=True),
            source=self.str_(d, "source", where, default=None),
            external=self.bool_(d, "external", where, default=False),
            provenance=self.dict_(d, "provenance", where, nullable=True),
        )

    def _known_adapter(self, d: dict[str, Any], where: str, names: list[str]) -> str:
        name = self.name(d, "adapter", where)
        if name not in names:
            have = ", ".join(names) or "none"
            self.fail(f"{where}.adapter", f"{_show(name)} is not in adapters (have: {have})")
        return name

    def sample(self, value: Any, where: str, names: list[str]) -> Sample:
        d = self.obj(value, where)
        scorer = self.obj(self._get(d, "scorer", where, _MISSING), f"{where}.scorer")
        reason = self.enum(d, "finish_reason", where, FINISH_REASONS)
        return Sample(
            battery=self.name(d, "battery", where),
            case=self.name(d, "case", where),
            adapter=self._known_adapter(d, where, names),
            prompt=self.str_(d, "prompt", where),
            output=self.str_(d, "output", where),
            expected=d.get("expected"),
            finish_reason=reason,
            tokens=self.int_(d, "tokens", where),
            latency_s=self.nonnegative(d, "latency_s", where),
            scorer=ScorerRef(name=self.name(scorer, "name", f"{where}.scorer"),
                             args=self.dict_(scorer, "args", f"{where}.scorer")),
            **self._verdict(d, where, reason == NOT_RUN),
            details=self.dict_(d, "details", where),
        )

    def _verdict(self, d: dict[str, Any], where: str, not_run: bool) -> dict[str, Any]:
        """``passed`` and ``score``: both null exactly when the sample was not run (no verdict to read)."""
        if not not_run:
            return {"passed": self.bool_(d, "passed", where), "score": self.num(d, "score", where)}
        for key in ("passed", "score"):
            if d.get(key) is not None:
                self.fail(f"{where}.{key}", f"expected null for a not-run sample (it has no verdict), "
                                            f"got {_show(d.get(key))}")
        return {"passed": None, "score": None}

    def metric(self, value: Any, where: str, names: list[str]) -> Metric:
        d = self.obj(value, where)
        metric = Metric(
            battery=self.name(d, "battery", where),
            adapter=self._known_adapter(d, where, names),
            name=self.name(d, "name", where),
            value=self.num(d, "value", where),
            ci_low=self.num(d, "ci_low", where, nullable=True, default=None),
            ci_high=self.num(d, "ci_high", where, nullable=True, default=None),
            n=self.int_(d, "n", where),
            method=self.enum(d, "method", where, CI_METHODS),
            source=self.enum(d, "source", where, METRIC_SOURCES, nullable=True),
            scale=self.num(d, "scale", where, default=1.0),
            higher_is_better=self.bool_(d, "higher_is_better", where, default=None)
            if d.get("higher_is_better") is not None else None,
        )
        if (metric.ci_low is None) != (metric.ci_high is None):
            self.fail(where, "ci_low and ci_high must both be numbers or both null")
        return metric

    # --- the judgements section (evalsuite.results.judgements) -----------------------------------

    def judgements(self, value: Any, adapters: list[str]) -> list[Judgement]:
        if value is None:
            return []
        top = self.obj(value, "judgements")
        self.section_version(top.get("version"), JUDGEMENTS_VERSION, "judgements.version")
        runs = [self.judgement(r, f"judgements.runs[{i}]", adapters)
                for i, r in enumerate(self.list_(top, "runs", "judgements"))]
        self._unique([j.key for j in runs], "judgements.runs", "(judge, a, b, battery)")
        return runs

    def judgement(self, value: Any, where: str, adapters: list[str]) -> Judgement:
        d = self.obj(value, where)
        pair = [self.name(d, side, where) for side in ("a", "b")]
        for side, name in zip(("a", "b"), pair, strict=True):
            if name not in adapters:
                self.fail(f"{where}.{side}", f"{name!r} is not in adapters (have: {', '.join(adapters) or 'none'})")
        verdicts = [self.pair_verdict(x, f"{where}.verdicts[{i}]")
                    for i, x in enumerate(self.list_(d, "verdicts", where))]
        return Judgement(judge=self.name(d, "judge", where), a=pair[0], b=pair[1],
                         battery=self.name(d, "battery", where), rubric=self.str_(d, "rubric", where),
                         created=self.str_(d, "created", where), verdicts=verdicts,
                         judge_model=self.dict_(d, "judge_model", where))

    def pair_verdict(self, value: Any, where: str) -> PairVerdict:
        d = self.obj(value, where)
        answers, parsed = self.list_(d, "answers", where), self.list_(d, "parsed", where)
        if len(answers) != len(parsed) or len(answers) > 2:
            self.fail(where, "answers and parsed must be two lists of the same length (at most 2: a first, b first)")
        for i, (answer, side) in enumerate(zip(answers, parsed, strict=True)):
            if not isinstance(answer, str):
                self.fail(f"{where}.answers[{i}]", f"expected a string, got {_show(answer)}")
            if side is not None and side not in SIDES:
                self.fail(f"{where}.parsed[{i}]", f"expected one of {', '.join(SIDES)} or null, got {_show(side)}")
        return PairVerdict(case=self.name(d, "case", where), verdict=self.enum(d, "verdict", where, SIDES),
                           reason=self.enum(d, "reason", where, REASONS), answers=list(answers), parsed=list(parsed))
