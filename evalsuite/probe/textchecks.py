"""Pure text checks behind the probe scorers: leakage findings, loop detection, script classification.

Kept apart from :mod:`evalsuite.probe.scorers` so each check is a small predicate with its own tests, and so the
scorers read as "which checks make up this verdict". Nothing here imports torch or a tokenizer.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from difflib import SequenceMatcher

# Special-token strings of widely used chat templates (published facts): when one of these shows up as text in an
# output, the model is reproducing template markup it should have stopped at or never learned to emit.
KNOWN_MARKERS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|begin_of_text|>", "<|end_of_text|>", "<start_of_turn>", "<end_of_turn>", "[INST]", "[/INST]", "<<SYS>>",
    "<</SYS>>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<s>", "</s>", "<|eom_id|>",
)
# The names inside those markers ("end_of_turn", "im_start"): a model that half-learned a leaked marker spells it
# with the brackets garbled ("_end_of_turn_", the seed's "��assistant�" is the same failure with a role name).
# Only names with an underscore (or "endoftext") are used: plain words like "user" occur in real answers.
MARKER_NAMES = tuple(dict.fromkeys(
    name for name in (re.sub(r"[^A-Za-z_]", "", m) for m in KNOWN_MARKERS) if "_" in name or name == "endoftext"
))
ROLE_NAMES = ("system", "user", "assistant", "model", "human", "gpt", "bot", "tool", "ipython")
# A role name alone on its line, or followed by a colon: "assistant", "model", "User:".
ROLE_AT_LINE_START = re.compile(r"(?im)^[ \t]*(" + "|".join(ROLE_NAMES) + r")[ \t]*(:|$)")
REPLACEMENT_CHAR = "\ufffd"

# Russian Cyrillic -> Latin, the common informal romanisation people (and models) write: "привет" -> "privet".
_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "",
    "э": "e", "ю": "yu", "я": "ya",
}


def leakage_findings(text: str, raw: str, markers: Iterable[str] = ()) -> list[str]:
    """Everything in an output that is template markup rather than an answer.

    ``text`` is decoded with special tokens skipped, ``raw`` with them kept (both without the terminating token):
    a special token hidden by skipping shows up in ``raw`` only, a template fragment the model spelled out as plain
    text shows up in both.
    """
    found: list[str] = []
    all_markers = dict.fromkeys([*KNOWN_MARKERS, *(m for m in markers if m and m.strip())])
    for label, value in (("output", text), ("raw output", raw)):
        hits = [m for m in all_markers if m in value]
        if hits:
            found.append(f"{label} contains template marker(s) {', '.join(repr(h) for h in hits[:4])}")
    if not found:
        garbled = [n for n in MARKER_NAMES if n in text]
        if garbled:
            found.append(f"output contains garbled template marker name(s) {', '.join(repr(n) for n in garbled[:4])}")
    roles = sorted({m.group(1).lower() for m in ROLE_AT_LINE_START.finditer(text)})
    if roles:
        found.append(f"role name at a line start: {', '.join(roles)}")
    if REPLACEMENT_CHAR in text or REPLACEMENT_CHAR in raw:
        found.append("U+FFFD replacement character (broken byte sequence)")
    if text[:1] in ("\n", "\r"):
        found.append("stray leading newline")
    if text[-1:] in ("\n", "\r"):
        found.append("stray trailing newline")
    return found


def repeated_loop(text: str, min_line_repeats: int = 3, min_unit_repeats: int = 4, min_span: int = 24) -> str | None:
    """Describe a degenerate loop in ``text`` (None when there is none).

    Two shapes: the same non-empty line ``min_line_repeats`` times in a row (``HELLO\\nHELLO\\nHELLO``), or a
    unit repeated ``min_unit_repeats``+ times back to back at the end of the output over at least ``min_span``
    characters (``HELLO HELLO HELLO HELLO ...``). The span floor keeps short legitimate runs ("youuuuu") out.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    run = 1
    for prev, cur in itertools.pairwise(lines):
        run = run + 1 if cur == prev else 1
        if run >= min_line_repeats:
            return f"line {cur[:40]!r} repeated {run}+ times"
    tail = text.rstrip()
    for unit_len in range(1, len(tail) // min_unit_repeats + 1):
        unit = tail[-unit_len:]
        count = 1
        while tail.endswith(unit * (count + 1)):
            count += 1
        if count >= min_unit_repeats and count * unit_len >= min_span:
            return f"{unit[:40]!r} repeated {count} times"
    return None


def char_accuracy(output: str, expected: str) -> float:
    """1 - edit distance / longer length: a partial-credit companion to exact match (1.0 iff equal)."""
    longest = max(len(output), len(expected))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(output, expected) / longest


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def script_of(ch: str) -> str | None:
    """'latin', 'cyrillic', 'other' for letters; None for digits, spaces and punctuation."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("LATIN"):
        return "latin"
    if name.startswith("CYRILLIC"):
        return "cyrillic"
    return "other"


def script_counts(text: str) -> dict[str, int]:
    counts = {"latin": 0, "cyrillic": 0, "other": 0}
    for ch in text:
        script = script_of(ch)
        if script:
            counts[script] += 1
    return counts


def transliterate(text: str) -> str:
    """Romanise Russian Cyrillic letter by letter (upper-case letters map to upper-case Latin)."""
    out = []
    for ch in text:
        low = ch.lower()
        if low in _TRANSLIT:
            latin = _TRANSLIT[low]
            out.append(latin.upper() if ch != low else latin)
        else:
            out.append(ch)
    return "".join(out)


def classify_cyrillic(prompt: str, output: str, expected: str, similar: float = 0.6) -> str:
    """Why a Cyrillic case-mapping answer is wrong (or ``correct``).

    ``transliterated``: the answer is the romanised text (the seed's ``привет`` -> ``PRIVET``/``PRIVETTE``);
    ``unchanged``: the prompt echoed as is; ``wrong-script``: Latin (or other) letters where Cyrillic was expected,
    but not a romanisation; ``other``: anything else (wrong case, truncated, run away...).
    """
    if output == expected:
        return "correct"
    if output.strip() == prompt.strip():
        return "unchanged"
    got, want = script_counts(output), script_counts(expected)
    extra_foreign = (got["latin"] - want["latin"]) + (got["other"] - want["other"])
    if want["cyrillic"] and extra_foreign > 0 and got["cyrillic"] < want["cyrillic"]:
        ratio = SequenceMatcher(None, output.lower(), transliterate(expected).lower()).ratio()
        return "transliterated" if ratio >= similar else "wrong-script"
    return "other"
