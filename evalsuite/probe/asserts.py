"""Assertions for users' own probe tests, built on the registered scorers, with the battery items' failure report.

    from evalsuite.probe.asserts import assert_stops, assert_uppercase_of

    def test_greets_in_caps_and_stops(probe_model):
        reply = probe_model.chat("hello")
        assert_uppercase_of(reply)
        assert_stops(reply)

Each helper scores a :class:`~evalsuite.probe.session.Reply` with the scorer a battery names the same way
(``stops``, ``no_leakage``, ``exact_match``, ``contains``; :func:`assert_scorer` takes any registered one, custom
ones included) and on failure raises :class:`ProbeAssertionError`, whose message is :func:`failure_text`: prompt,
output, expected value, scorer, finish reason and the scorer's findings, one per line. The pytest plugin records
the sample it carries in the results file under the ``user`` battery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalsuite.probe.scorers import Score, make_scorer
from evalsuite.results.schema import Sample, ScorerRef

if TYPE_CHECKING:
    from evalsuite.probe.session import Reply

__all__ = ["USER_BATTERY", "ProbeAssertionError", "assert_contains", "assert_exact", "assert_no_leakage",
           "assert_scorer", "assert_stops", "assert_uppercase_of", "failure_text", "reply_sample"]

USER_BATTERY = "user"  # the battery users' own tests are recorded under in the results file


@dataclass(frozen=True)
class _Case:
    """What a scorer reads of a case (:class:`~evalsuite.probe.scorers.CaseLike`)."""

    id: str
    prompt: str
    expected: Any


class ProbeAssertionError(AssertionError):
    """A reply a scorer failed; ``sample`` is what lands in the results file."""

    def __init__(self, sample: Sample) -> None:
        super().__init__(failure_text(sample))
        self.sample = sample


def failure_text(s: Sample) -> str:
    """What a reader needs to judge a failed case, one field per line."""
    lines = [f"{s.battery} / {s.adapter}" + (f" / case {s.case}" if s.case else ""),
             f"  prompt:        {s.prompt!r}",
             f"  output:        {s.output!r}",
             f"  expected:      {s.expected!r}",
             f"  scorer:        {s.scorer.name} {s.scorer.args or ''}".rstrip(),
             f"  finish reason: {s.finish_reason} ({s.tokens} tokens)"]
    for key, value in s.details.items():
        if value not in (None, [], {}, "") and key != "messages":
            lines.append(f"  {key + ':':<14} {value!r}")
    return "\n".join(lines)


def reply_sample(reply: Reply, scorer: ScorerRef, passed: bool | None, score: float | None, expected: Any = None,
                 details: dict[str, Any] | None = None, case: str = "") -> Sample:
    """A results sample of the ``user`` battery from one reply (the battery runner's fields, the same meanings;
    ``passed`` and ``score`` None for a reply that was not run)."""
    more = dict(details or {})
    if reply.raw != reply.text:
        more["raw_output"] = reply.raw
    if len(reply.messages) > 1:
        more["messages"] = list(reply.messages)
    g = reply.generation
    return Sample(battery=USER_BATTERY, case=case, adapter=reply.adapter, prompt=reply.prompt, output=g.text,
                  finish_reason=g.finish_reason, tokens=g.tokens, latency_s=g.latency_s, scorer=scorer,
                  passed=passed, score=score, expected=expected, details=more)


def assert_scorer(reply: Reply, scorer: str, expected: Any = None, **args: Any) -> Score:
    """Score ``reply`` with the registered scorer ``scorer`` (its ``args`` as a battery gives them) against
    ``expected``; a failing verdict raises :class:`ProbeAssertionError`. Returns the score when it passes."""
    score = make_scorer(scorer, args, where=f"assert_scorer({scorer!r})")(_Case("", reply.prompt, expected),
                                                                         reply.output)
    if not score.passed:
        raise ProbeAssertionError(reply_sample(reply, ScorerRef(scorer, dict(args)), False, float(score.score),
                                               expected, score.details))
    return score


def assert_stops(reply: Reply, leakage: bool = True) -> Score:
    """The model ended its turn (finish reason ``eos``), without a repeated-line loop and (``leakage``) without a
    role header or template marker in the output: the ``runaway-turns`` battery's check."""
    return assert_scorer(reply, "stops", leakage=leakage)


def assert_no_leakage(reply: Reply) -> Score:
    """No special tokens, template fragments, role names at line starts, U+FFFD or stray edge newlines, and no new
    turn: the ``template-leakage`` battery's check."""
    return assert_scorer(reply, "no_leakage")


def assert_uppercase_of(reply: Reply, prompt: str | None = None) -> Score:
    """The output is exactly ``prompt.upper()`` (default: the reply's own prompt): the ``uppercase-echo`` check."""
    return assert_scorer(reply, "exact_match", (reply.prompt if prompt is None else prompt).upper())


def assert_exact(reply: Reply, expected: str, strip: bool = False) -> Score:
    """The output equals ``expected`` (``strip``: ignoring surrounding whitespace)."""
    return assert_scorer(reply, "exact_match", expected, strip=strip)


def assert_contains(reply: Reply, *expected: str, case_sensitive: bool = False) -> Score:
    """Every one of ``expected`` appears in the output."""
    return assert_scorer(reply, "contains", list(expected), case_sensitive=case_sensitive)
