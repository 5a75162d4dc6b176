"""The results file: what the probe runner writes and gates/reports read (``schema_version`` 3; 1 and 2 still load).

One JSON object::

    {"schema_version": 3, "created": ISO-8601, "evalsuite_version": str,
     "engine": {"name": str, "seed": int, "max_new_tokens": int, ...free-form generation settings,
                "session": {"version": 1, "load_s", "generate_s", "peak_rss_bytes", "peak_cuda_bytes"}},  # optional
     "adapters": [{"name", "path", "kind": "adapter"|"merged"|"base"|"gguf"|"endpoint", "base_model", "weights_sha256",
                   "manifest_digest", "manifest", "source", "external", "provenance"}],
     "samples": [{"battery", "case", "adapter", "prompt", "output", "expected", "finish_reason",
                  "tokens", "latency_s", "scorer": {"name", "args"}, "passed", "score", "details"}],
     "metrics": [{"battery", "adapter", "name", "value", "ci_low", "ci_high", "n", "method",
                  "source", "scale", "higher_is_better"}],
     "baseline": {...},  # only in files written by ``evalsuite baseline record``
     "judgements": {"version": 1, "runs": [...]},  # only after ``evalsuite judge`` (evalsuite.results.judgements)
     "partial": {"batteries": {name: {"planned", "ran"}}, "selection"}}  # only when a selection of the cases ran

``source``/``scale``/``higher_is_better`` on a metric row are optional: they say how the metric is
computed from the samples (``scale * mean`` of ``passed``, ``not passed`` or ``score``) so a gate can
redo the paired test on any metric, including ones a user battery declares. Missing, they default
from the built-in metric table in :mod:`evalsuite.results.aggregate`.

Version 2 added the ``merged`` kind and, per column, ``source`` (what was given: ``run-dir``, ``peft``,
``checkpoint``, ``merged``, ``hub-adapter`` or ``base``), ``external`` (true: no evalsuite manifest) and
``provenance`` (where its base, template, tokenizer and stop ids came from). Version 1 files load with those empty.

Version 3 added the ``not-run`` finish reason: a generation the run did not let the model finish (the stall guard
stopped a stuck engine, see :mod:`evalsuite.probe.guard`). Such a sample has ``"passed": null`` and ``"score":
null`` (no verdict: a reader that counts ``passed`` cannot take it for a pass or a failure), ``details.not_run``
says why in one line naming the option, and it counts in no metric. Version 1 and 2 files never hold one.

The dataclasses here import nothing from evalsuite but the judgements' dataclasses;
:mod:`evalsuite.results.validate` builds them from parsed JSON and :mod:`evalsuite.results.io` reads and writes files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from evalsuite.results.judgements import Judgement, judgements_dict

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
SESSION_VERSION = 1  # of engine.session (what a probe session cost: seconds, peak memory); older files have none
ADAPTER_KINDS = ("adapter", "merged", "base", "gguf", "endpoint")
CI_METHODS = ("wilson", "bootstrap", "none")
METRIC_SOURCES = ("passed", "failed", "score")

FinishReason = Literal["eos", "stop-string", "max-tokens", "new-turn", "not-run"]
FINISH_REASONS: tuple[str, ...] = get_args(FinishReason)
NOT_RUN = "not-run"  # the model was not let to finish: no verdict, in no metric (``details.not_run`` says why)


@dataclass
class EngineInfo:
    """Generation engine and settings; keys beyond the three fixed ones live in ``settings``."""

    name: str
    seed: int
    max_new_tokens: int
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterInfo:
    """One column of results: a LoRA adapter (``kind="adapter"``), a merged model, the plain base model, or a GGUF
    file run by llama.cpp (``kind="gguf"``), or an OpenAI-compatible server (``kind="endpoint"``, its URL the path)."""

    name: str
    kind: str
    base_model: str
    path: str | None = None
    weights_sha256: str | None = None
    manifest_digest: str | None = None
    manifest: dict[str, Any] | None = None
    source: str | None = None  # how the column was given (kinds above); None in version 1 files
    external: bool = False  # no evalsuite manifest: trained by another tool
    provenance: dict[str, Any] | None = None  # base, template, tokenizer, stops: where each came from


@dataclass
class ScorerRef:
    """The registered scorer name and its arguments, so every number traces back to code."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """One generation for one probe case under one adapter, with its score."""

    battery: str
    case: str
    adapter: str
    prompt: str
    output: str
    finish_reason: str
    tokens: int
    latency_s: float
    scorer: ScorerRef
    passed: bool | None  # None exactly when not run (``finish_reason`` ``not-run``): no verdict
    score: float | None
    expected: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        """False for a ``not-run`` sample: the model was not let to answer; it has no verdict and no score."""
        return self.finish_reason != NOT_RUN

    @property
    def failed(self) -> bool:
        """Ran and failed (a not-run sample neither passed nor failed)."""
        return self.ran and not self.passed

    @property
    def not_run_reason(self) -> str:
        """Why a not-run sample was not run (``details.not_run``), else empty."""
        return str(self.details.get("not_run") or "the run did not finish it") if not self.ran else ""

    @property
    def answer(self) -> str:
        """What was scored: the text after a reasoning block (``details.answer``), else the whole output."""
        answer = self.details.get("answer")
        return answer if isinstance(answer, str) else self.output

    @property
    def turns(self) -> list[tuple[str, str]]:
        """(role, content) of every turn of a multi-turn case (the runner records them), else the one prompt."""
        messages = self.details.get("messages")
        if isinstance(messages, list) and all(isinstance(m, dict) for m in messages) and len(messages) > 1:
            return [(str(m.get("role", "?")), str(m.get("content", ""))) for m in messages]
        return [("user", self.prompt)]


@dataclass
class Metric:
    """One aggregate number per (battery, adapter, name) with its confidence interval."""

    battery: str
    adapter: str
    name: str
    value: float
    n: int
    method: str
    ci_low: float | None = None
    ci_high: float | None = None
    source: str | None = None
    scale: float = 1.0
    higher_is_better: bool | None = None


@dataclass
class Results:
    """A whole results file. ``baseline`` is set only on files recorded as baselines."""

    created: str
    evalsuite_version: str
    engine: EngineInfo
    adapters: list[AdapterInfo]
    samples: list[Sample]
    metrics: list[Metric]
    schema_version: int = SCHEMA_VERSION
    baseline: dict[str, Any] | None = None
    judgements: list[Judgement] = field(default_factory=list)
    # Set when the run generated only a selection of its planned cases (pytest -k/--lf/node ids): per battery,
    # {"planned": n, "ran": n}, and what selected them. Gates refuse its incomplete batteries (evalsuite.gates.cli).
    partial: dict[str, Any] | None = None
    path: Path | None = field(default=None, compare=False, repr=False)

    def adapter(self, name: str) -> AdapterInfo:
        for info in self.adapters:
            if info.name == name:
                return info
        raise KeyError(name)

    def batteries(self) -> list[str]:
        """Battery names in order of first appearance (samples, then metrics)."""
        seen = dict.fromkeys(s.battery for s in self.samples)
        seen.update(dict.fromkeys(m.battery for m in self.metrics))
        return list(seen)

    def samples_for(self, battery: str, adapter: str) -> list[Sample]:
        return [s for s in self.samples if s.battery == battery and s.adapter == adapter]

    def not_run(self) -> list[Sample]:
        """The samples the model was not let to finish (no verdict, in no metric)."""
        return [s for s in self.samples if not s.ran]

    def metric(self, battery: str, adapter: str, name: str) -> Metric | None:
        for m in self.metrics:
            if (m.battery, m.adapter, m.name) == (battery, adapter, name):
                return m
        return None

    def metric_names(self, battery: str) -> list[str]:
        return list(dict.fromkeys(m.name for m in self.metrics if m.battery == battery))

    def gated_adapters(self) -> list[str]:
        """The adapters gates apply to: every non-base adapter, or the base when it is alone."""
        names = [a.name for a in self.adapters if a.kind != "base"]
        return names or [a.name for a in self.adapters]

    def to_dict(self) -> dict[str, Any]:
        engine = {"name": self.engine.name, "seed": self.engine.seed,
                  "max_new_tokens": self.engine.max_new_tokens, **self.engine.settings}
        out: dict[str, Any] = {
            "schema_version": self.schema_version, "created": self.created,
            "evalsuite_version": self.evalsuite_version, "engine": engine,
            "adapters": [_adapter_dict(a) for a in self.adapters],
            "samples": [_sample_dict(s) for s in self.samples],
            "metrics": [_metric_dict(m) for m in self.metrics],
        }
        if self.baseline is not None:
            out["baseline"] = self.baseline
        if self.judgements:
            out["judgements"] = judgements_dict(self.judgements)
        if self.partial is not None:
            out["partial"] = self.partial
        return out

    def judgements_for(self, battery: str) -> list[Judgement]:
        return [j for j in self.judgements if j.battery == battery]


def _adapter_dict(a: AdapterInfo) -> dict[str, Any]:
    return {"name": a.name, "path": a.path, "kind": a.kind, "base_model": a.base_model,
            "weights_sha256": a.weights_sha256, "manifest_digest": a.manifest_digest,
            "manifest": a.manifest, "source": a.source, "external": a.external, "provenance": a.provenance}


def _sample_dict(s: Sample) -> dict[str, Any]:
    return {"battery": s.battery, "case": s.case, "adapter": s.adapter, "prompt": s.prompt,
            "output": s.output, "expected": s.expected, "finish_reason": s.finish_reason,
            "tokens": s.tokens, "latency_s": s.latency_s,
            "scorer": {"name": s.scorer.name, "args": s.scorer.args},
            "passed": s.passed, "score": s.score, "details": s.details}


def _metric_dict(m: Metric) -> dict[str, Any]:
    return {"battery": m.battery, "adapter": m.adapter, "name": m.name, "value": m.value,
            "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n, "method": m.method,
            "source": m.source, "scale": m.scale, "higher_is_better": m.higher_is_better}
