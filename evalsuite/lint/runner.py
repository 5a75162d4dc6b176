"""Run every rule family over a :class:`~evalsuite.lint.setup.LintSetup` and assemble the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.encode import encode_batch
from evalsuite.errors import EvalsuiteError
from evalsuite.lint.findings import RULES, Finding, exit_code
from evalsuite.lint.model_rules import MODEL_RULES
from evalsuite.lint.row_rules import ROW_RULES, trainable_fraction_by_role
from evalsuite.lint.rows import run_rows
from evalsuite.lint.setup import LintSetup
from evalsuite.lint.shapes import build_context
from evalsuite.lint.template_rules import STRUCTURAL
from evalsuite.lint.turn_rules import TURN_RULES

SCHEMA_VERSION = 1
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class LintReport:
    setup: LintSetup
    findings: list[Finding]
    stats: dict[str, Any]
    shown: list[dict[str, Any]] = field(default_factory=list)  # --show N samples

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "source": self.setup.source,
                "findings": [f.to_json() for f in self.findings], "stats": self.stats,
                "samples": self.shown, "exit_code": self.exit_code}


def check_ignores(ignore: set[str], where: str) -> None:
    unknown = sorted(set(ignore) - set(RULES))
    if unknown:
        raise EvalsuiteError(f"{where}: ignore: unknown lint rule {', '.join(unknown)} (known: {', '.join(RULES)})")


def example(setup: LintSetup, enc: Any) -> dict[str, Any]:
    tk = setup.tk
    return {"row": enc.sample.where, "text": enc.text,
            "tokens": [tk.tokenizer.id_to_token(i) for i in enc.input_ids], "ids": enc.input_ids,
            "labels": enc.labels, "truncated": enc.truncated}


def _merge(findings: list[Finding]) -> list[Finding]:
    """Two families may report the same rule (train-infer-mismatch from the text and from the tokens; template-error
    from whole shapes and from single rows): keep one finding with both messages."""
    merged: dict[tuple[str, str], Finding] = {}
    for f in findings:
        m = merged.get((f.rule, f.severity))
        if m is None:
            merged[(f.rule, f.severity)] = f
            continue
        m.message += f"; {f.message}"
        m.count = max(m.count, f.count)
        m.rows = sorted(set(m.rows) | set(f.rows))[:3]
    return list(merged.values())


def run_lint(setup: LintSetup, show: int = 0, max_examples: int = 3) -> LintReport:
    started = time.perf_counter()
    check_ignores(setup.ignore, setup.source)
    chat = next((s for s in setup.samples if s.messages is not None), None)
    if chat is not None and setup.template is None:
        raise EvalsuiteError(f"{setup.tk.path}: the tokenizer has no chat template and none is given, but "
                             f"{chat.where} is a chat row (set chat_template / --chat-template)")
    if not setup.samples:
        raise EvalsuiteError(f"{setup.source}: no rows to lint")
    ctx = build_context(setup)
    rp = run_rows(ctx)
    findings: list[Finding] = []
    for rule in STRUCTURAL:
        findings += rule(ctx)
    for family in (*ROW_RULES, *TURN_RULES, *MODEL_RULES):
        findings += family(ctx, rp)
    findings = _merge(findings)
    for f in findings:
        f.ignored = f.rule in setup.ignore
    findings.sort(key=lambda f: (f.ignored, SEVERITY_ORDER[f.severity], f.rule))
    _attach_examples(setup, findings, max_examples)
    shown = _show(setup, show)
    stats = {
        "rows": rp.rows, "tokens": rp.tokens, "trained_tokens": sum(rp.role_trained.values()),
        "trainable_fraction_by_role": trainable_fraction_by_role(rp),
        "tokens_by_role": dict(rp.role_tokens), "truncated_rows": rp.truncated,
        "shapes": len(ctx.shapes), "text_rows": len(ctx.text_rows),
        "spliced_shapes": sum(1 for s in ctx.shapes.values() if s.plan is not None and s.plan.layout is not None),
        "stop_token_ids": sorted(setup.stop_ids), "end_of_turn": ctx.eot, "collator": setup.collator,
        "notes": setup.notes, "elapsed_s": round(time.perf_counter() - started, 3),
    }
    return LintReport(setup, findings, stats, shown)


def _attach_examples(setup: LintSetup, findings: list[Finding], k: int) -> None:
    wanted = sorted({r for f in findings for r in f.rows[:k]})
    if not wanted:
        return
    opts = setup.encode_options()
    encoded: dict[int, Any] = {}
    for r in wanted:
        try:
            encoded[r] = encode_batch([setup.samples[r]], setup.tk, setup.template, opts)[0]
        except EvalsuiteError:
            continue  # a row the template refuses has no tokens to show; its finding says why
    for f in findings:
        f.examples = [_masked(setup, example(setup, encoded[r])) for r in f.rows[:k] if r in encoded]


def _masked(setup: LintSetup, ex: dict[str, Any]) -> dict[str, Any]:
    """Apply the modelled collator and the shifted loss to an example's labels, as the trainer will see them."""
    labels = list(ex["labels"])
    if labels:
        labels[0] = -100
    if setup.collator == "mask-pad-id" and setup.pad_id is not None:
        labels = [-100 if i == setup.pad_id else lab for i, lab in zip(ex["ids"], labels)]
    ex["labels"] = labels
    return ex


def _show(setup: LintSetup, n: int) -> list[dict[str, Any]]:
    if n <= 0:
        return []
    opts = setup.encode_options()
    out = []
    for s in setup.samples[:n]:
        try:
            out.append(_masked(setup, example(setup, encode_batch([s], setup.tk, setup.template, opts)[0])))
        except EvalsuiteError:
            continue
    return out
