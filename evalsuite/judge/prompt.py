"""The judge's prompt, the parsing of its answer, and how the two orders make one verdict (pure functions).

Each case is asked twice, once with column a's answer shown first and once with b's first, so a judge that prefers
whichever answer comes first (position bias) cancels out: a verdict counts only when both orders agree, anything
else is a tie. An answer that names no verdict, or two different ones, is unparseable: counted, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

DEFAULT_RUBRIC = (
    "Decide which answer serves the user better: it does what the prompt asks, is correct, complete and clear, and "
    "says it without padding. An answer that only repeats the prompt, loops, trails off mid-sentence or is empty is "
    "worse than any real answer. Do not let the order of the answers or their length decide."
)
INSTRUCTION = 'Which answer is better? Reply with exactly one line: "Verdict: A", "Verdict: B" or "Verdict: tie".'
ORDERS = ("ab", "ba")  # a first, then b first

_VERDICT = re.compile(r"verdict\W{0,3}(?:is\W{0,3})?(?:answer\s+)?\W{0,3}(a|b|tie)\b", re.IGNORECASE)
_BRACKETS = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.IGNORECASE)  # MT-Bench's [[A]], [[B]], [[C]] (a tie)
_BARE = re.compile(r"^\W*(?:answer\s+)?(a|b|tie)\W*$", re.IGNORECASE)  # the whole reply: "B", "(A).", "Tie"


def judge_prompt(turns: Sequence[tuple[str, str]], first: str, second: str, rubric: str = DEFAULT_RUBRIC) -> str:
    """The user message sent to the judge: the rubric, the conversation, the two answers, the reply format."""
    convo = turns[0][1] if len(turns) == 1 else "\n".join(f"{role}: {text}" for role, text in turns)
    return (f"Compare two answers to the same prompt.\n\n{rubric.strip()}\n\n[Prompt]\n{convo}\n\n"
            f"[Answer A]\n{first or '(empty)'}\n\n[Answer B]\n{second or '(empty)'}\n\n{INSTRUCTION}")


def parse_verdict(text: str) -> str | None:
    """``"a"``, ``"b"`` or ``"tie"`` (the positions A and B as shown), or None when the reply names no verdict or
    several different ones."""
    found = {m.lower() for m in _VERDICT.findall(text)}
    found |= {"tie" if m.lower() == "c" else m.lower() for m in _BRACKETS.findall(text)}
    if not found:
        bare = _BARE.match(text.strip())
        found = {bare.group(1).lower()} if bare else set()
    return found.pop() if len(found) == 1 else None


def in_pair_terms(position: str | None, order: str) -> str | None:
    """A verdict about positions, named by column: with b shown first, position A is column b."""
    if position is None or order == "ab" or position == "tie":
        return position
    return "b" if position == "a" else "a"


def combine(parsed: Sequence[str | None]) -> tuple[str, str]:
    """(verdict, reason) from the two orders' verdicts in pair terms: ``agree`` when both name the same side (or
    both a tie), else a tie, ``unparseable`` when an answer named nothing and ``inconsistent`` when they differ."""
    if any(p is None for p in parsed):
        return "tie", "unparseable"
    if len(set(parsed)) == 1:
        return str(parsed[0]), "agree"
    return "tie", "inconsistent"
