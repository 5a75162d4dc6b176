"""Scorers: registered factories returning closures (the inspect_ai shape).

A battery names a scorer and its arguments (``scorer: {name: exact_match, args: {strip: true}}``); the factory
validates the arguments once and returns ``score(case, output) -> Score``. The name and arguments land in every
result sample, so each number traces back to the code that produced it.

The registry is explicit, lazy and loud: a literal name -> "module:attr" map for the built-ins, the
``evalsuite.scorers`` entry-point group for installed packages, and :func:`register_scorer` for code (a
``conftest.py``); an unknown or duplicate name raises with the list of known ones.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.textchecks import (
    char_accuracy,
    classify_cyrillic,
    leakage_findings,
    other_script,
    repeated_loop,
    repeated_ngram,
    restatement,
)
from evalsuite.registry import Registry

ENTRY_POINT_GROUP = "evalsuite.scorers"


@dataclass(frozen=True)
class Output:
    """What a scorer sees of one generation.

    ``text``: decoded with special tokens skipped, cut at the stop; ``raw``: the same ids decoded with special
    tokens kept; ``markers``: template-specific strings that must never appear in an answer (the tokenizer's special
    tokens and the template's role headers), supplied by the runner.
    """

    text: str
    finish_reason: str
    raw: str = ""
    tokens: int = 0
    markers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Score:
    passed: bool
    score: float
    details: dict[str, Any] = field(default_factory=dict)


class CaseLike(Protocol):
    """What a scorer reads of a case (``evalsuite.probe.batteries.Case`` satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def prompt(self) -> str: ...

    @property
    def expected(self) -> Any: ...


ScoreFn = Callable[[CaseLike, Output], Score]
Factory = Callable[..., ScoreFn]

BUILTIN: dict[str, str] = {
    "exact_match": "evalsuite.probe.scorers:exact_match",
    "cyrillic_case": "evalsuite.probe.scorers:cyrillic_case",
    "stops": "evalsuite.probe.scorers:stops",
    "no_leakage": "evalsuite.probe.scorers:no_leakage",
    "squad": "evalsuite.probe.scorers:squad",
    "open_ended": "evalsuite.probe.scorers:open_ended",
    "contains": "evalsuite.probe.scorers:contains",
    "tool_call": "evalsuite.probe.scorers:tool_call",
}
SCORERS = Registry("scorer", BUILTIN, ENTRY_POINT_GROUP)


def register_scorer(name: str, factory: Factory | None = None) -> Any:
    """Register a scorer factory under ``name`` (usable as a decorator). Re-registering a name is an error."""

    def add(fn: Factory) -> Factory:
        SCORERS.register(name, fn)
        return fn

    return add(factory) if factory is not None else add


def known_scorers() -> dict[str, str]:
    """name -> where it comes from, for error messages and ``evalsuite probe --list``."""
    return SCORERS.known()


def get_factory(name: str) -> Factory:
    factory: Factory = SCORERS.load(name)
    return factory


def make_scorer(name: str, args: dict[str, Any] | None = None, where: str = "") -> ScoreFn:
    """Build a scorer; bad arguments are one error naming ``where`` (``battery.yaml:3: scorer``)."""
    prefix = f"{where}: " if where else ""
    try:
        factory = get_factory(name)
    except EvalsuiteError as e:
        raise EvalsuiteError(f"{prefix}{e}") from None
    args = dict(args or {})
    try:
        inspect.signature(factory).bind(**args)
    except TypeError as e:
        raise EvalsuiteError(f"{prefix}scorer {name!r}: bad arguments {args}: {e}") from None
    try:
        return factory(**args)
    except (TypeError, ValueError) as e:
        raise EvalsuiteError(f"{prefix}scorer {name!r}: {e}") from None


def _strings(x: Any, empty: bool = False) -> bool:
    return isinstance(x, str) or (isinstance(x, list) and (empty or bool(x)) and all(isinstance(a, str) for a in x))


# What each built-in scorer reads from a case's ``expected`` (a wrong type would be scored as something else:
# ``str(None)``, a dict's keys): checked when the battery loads (``expected_problem``). Scorers not listed ignore it.
EXPECTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "exact_match": (lambda x: isinstance(x, str), "a string (the exact answer)"),
    "cyrillic_case": (lambda x: isinstance(x, str), "a string (the expected text)"),
    "squad": (_strings, "an answer string or a non-empty list of answer strings"),
    "contains": (lambda x: _strings(x, empty=True), "a string or a list of strings that must appear"),
    "open_ended": (lambda x: x is None or (isinstance(x, dict) and set(x) <= {"contains"}
                                           and _strings(x.get("contains", "x"))),
                   "nothing, or {contains: [strings]}"),
    "tool_call": (lambda x: x is None or (isinstance(x, str) and bool(x))
                  or (isinstance(x, dict) and set(x) == {"name"} and isinstance(x["name"], str)),
                  "nothing, a tool name, or {name: TOOL}"),
}


def expected_problem(scorer: str, expected: Any) -> str | None:
    """Why ``expected`` cannot be what ``scorer`` reads (None when it can, or the scorer is not a built-in)."""
    rule = EXPECTED.get(scorer)
    if rule is None or rule[0](expected):
        return None
    return f"scorer {scorer} expects {rule[1]}, got {json.dumps(expected, default=str)[:80]}"


# ---- built-in scorers --------------------------------------------------------------------------------------------


def exact_match(strip: bool = False) -> ScoreFn:
    """Output equals the expected string. Score = character accuracy (partial credit, secondary metric)."""

    def score(case: CaseLike, out: Output) -> Score:
        got = out.text.strip() if strip else out.text
        want = str(case.expected)
        return Score(got == want, char_accuracy(got, want))

    return score


def cyrillic_case(similar: float = 0.6) -> ScoreFn:
    """Exact match against the expected Cyrillic text; failures classified (transliterated, unchanged, ...)."""
    if not 0.0 < similar <= 1.0:
        raise ValueError(f"similar must be in (0, 1], got {similar}")

    def score(case: CaseLike, out: Output) -> Score:
        want = str(case.expected)
        verdict = classify_cyrillic(case.prompt, out.text, want, similar)
        return Score(verdict == "correct", char_accuracy(out.text, want), {"failure": None if verdict == "correct"
                                                                          else verdict})

    return score


def _stop_problems(out: Output) -> list[str]:
    problems = []
    if out.finish_reason != "eos":
        problems.append({"max-tokens": "did not stop within the token budget",
                         "new-turn": "started another role turn instead of stopping",
                         "stop-string": "stopped only at a stop string"}.get(out.finish_reason, out.finish_reason))
    loop = repeated_loop(out.text)
    if loop:
        problems.append(f"loop: {loop}")
    return problems


def stops(leakage: bool = True) -> ScoreFn:
    """The model ends its turn: finish reason ``eos``, no repeated-line loop, and (``leakage``) no role header or
    template marker in the output (a model that writes ``assistant`` headers is running into the next turn)."""

    def score(case: CaseLike, out: Output) -> Score:
        problems = _stop_problems(out)
        if leakage:
            problems += [p for p in leakage_findings(out.text, out.raw, out.markers) if "newline" not in p]
        return Score(not problems, float(not problems), {"problems": problems})

    return score


def no_leakage() -> ScoreFn:
    """No special tokens, template fragments, role names at line starts, U+FFFD or stray edge newlines, checked on
    the output with and without special tokens skipped; starting a new turn is leakage too."""

    def score(case: CaseLike, out: Output) -> Score:
        problems = leakage_findings(out.text, out.raw, out.markers)
        if out.finish_reason == "new-turn":
            problems.append("emitted a turn-start token (a new role turn)")
        return Score(not problems, float(not problems), {"problems": problems})

    return score


def squad() -> ScoreFn:
    """SQuAD v1.1 exact match (the verdict) and F1 (the score), max over the gold answers, with the official
    normalisation. Uses the metric module shipped in ``evalsuite/metrics/squad_v11`` (the one implementation)."""
    from evalsuite.metrics.squad_v11.squad_scoring import exact_match_score, f1_score, max_over_ground_truths

    def score(case: CaseLike, out: Output) -> Score:
        answers = _answers(case.expected)
        em = bool(max_over_ground_truths(exact_match_score, out.text, answers))
        f1 = float(max_over_ground_truths(f1_score, out.text, answers))
        return Score(em, f1, {"f1": f1})

    return score


def _answers(expected: Any) -> list[str]:
    if isinstance(expected, str):
        return [expected]
    if isinstance(expected, Sequence) and expected and all(isinstance(a, str) for a in expected):
        return list(expected)
    raise ValueError(f"squad cases need expected = a list of answer strings, got {expected!r}")


def contains(case_sensitive: bool = False) -> ScoreFn:
    """Every expected string (``expected``: a string or a list) appears in the output."""

    def score(case: CaseLike, out: Output) -> Score:
        missing = _missing(case.expected, out.text, case_sensitive)
        return Score(not missing, float(not missing), {"missing": missing})

    return score


def _missing(expected: Any, text: str, case_sensitive: bool) -> list[str]:
    wanted = [expected] if isinstance(expected, str) else list(expected or [])
    hay = text if case_sensitive else text.lower()
    return [w for w in wanted if (w if case_sensitive else w.lower()) not in hay]


def open_ended(min_chars: int = 1, echo: bool = True, same_script: bool = True) -> ScoreFn:
    """Open prompts (read side by side, judged pairwise): the answer must be an answer. Fails, each with its reason
    id in ``details.reasons`` and its message in ``details.problems``: ``empty``, ``truncated`` (ran into the token
    budget), ``new-turn`` / ``stop-string`` (did not end its turn), ``loop`` (a repeated line or n-gram),
    ``restates-prompt`` (``echo``: the prompt's words and nothing else, in any order, see
    :func:`~evalsuite.probe.textchecks.restatement`), ``other-script`` (``same_script``: another script than the
    prompt, where checkable), ``leakage``, and ``missing-answer`` when the case has ``expected: {contains: [...]}``
    (13 and 21 for Fibonacci)."""

    def score(case: CaseLike, out: Output) -> Score:
        found = _answer_problems(case.prompt, out, min_chars, echo, same_script)
        found += [("leakage", p) for p in leakage_findings(out.text, out.raw, out.markers)]
        checks = case.expected.get("contains", []) if isinstance(case.expected, dict) else []
        missing = _missing(checks, out.text, False)
        if missing:
            found.append(("missing-answer", f"missing expected answer(s): {', '.join(missing)}"))
        return Score(not found, float(not found), {"problems": [m for _, m in found],
                                                   "reasons": list(dict.fromkeys(r for r, _ in found))})

    return score


_FINISH_PROBLEMS = {"max-tokens": ("truncated", "cut at the token budget: the answer did not finish"),
                    "new-turn": ("new-turn", "started another role turn instead of stopping"),
                    "stop-string": ("stop-string", "stopped only at a stop string")}


def _answer_problems(prompt: str, out: Output, min_chars: int, echo: bool,
                     same_script: bool) -> list[tuple[str, str]]:
    found = []
    if len(out.text.strip()) < min_chars:
        found.append(("empty", "empty answer"))
    if out.finish_reason != "eos":
        found.append(_FINISH_PROBLEMS.get(out.finish_reason, (out.finish_reason, out.finish_reason)))
    loop = repeated_loop(out.text) or repeated_ngram(out.text)
    if loop:
        found.append(("loop", f"degenerate repetition: {loop}"))
    restated = restatement(prompt, out.text) if echo else None
    if restated:
        found.append(("restates-prompt", restated))
    script = other_script(prompt, out.text) if same_script else None
    if script:
        found.append(("other-script", script))
    return found


def tool_call() -> ScoreFn:
    """The output calls a tool the case declared (``tools``, rendered into the prompt by the chat template): at
    least one call parses as JSON, every call names a declared tool with its required arguments as an object, and
    the expected tool (``expected: {name: NAME}`` or ``expected: NAME``) is called. Reasons in ``details.reasons``:
    ``bad-json``, ``no-call``, ``unknown-tool``, ``bad-arguments``, ``missing-arguments``, ``wrong-tool``."""
    from evalsuite.probe.toolcalls import call_problems

    def score(case: CaseLike, out: Output) -> Score:
        expected = case.expected.get("name") if isinstance(case.expected, dict) else case.expected
        found = call_problems(out.text, getattr(case, "tools", ()) or (), expected)
        return Score(not found, float(not found), {"problems": [m for _, m in found],
                                                   "reasons": list(dict.fromkeys(r for r, _ in found))})

    return score
