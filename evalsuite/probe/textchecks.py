"""Pure text checks behind the probe scorers: leakage findings, loop detection, script classification.

Kept apart from :mod:`evalsuite.probe.scorers` so each check is a small predicate with its own tests, and so the
scorers read as "which checks make up this verdict". Nothing here imports torch or a tokenizer.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections import Counter
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
_WORD = re.compile(r"[^\W_]+")  # a word: letters and digits

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

    Two shapes: the same line (with a letter or digit) ``min_line_repeats`` times in a row
    (``HELLO\\nHELLO\\nHELLO``), or a unit repeated ``min_unit_repeats``+ times back to back at the end of the output
    over at least ``min_span`` characters (``HELLO HELLO HELLO HELLO ...``). The span floor keeps short legitimate
    runs ("youuuuu") out.
    """
    # Lines without a letter or digit ("}", "---") repeat in real answers: closing braces of nested code blocks.
    lines = [line.strip() for line in text.splitlines() if _WORD.search(line)]
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


# ---- open answers: restating the prompt, repeated n-grams, another script --------------------------------------

GRAM = 4  # characters: long enough that a shared 4-gram is material from the prompt, short enough for fragments


def words(text: str) -> list[str]:
    """Casefolded NFKC words (letters and digits): case, width and punctuation never change an overlap."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _coverage(text: list[str], source: list[str], k: int = GRAM) -> list[tuple[int, int]]:
    """(letters, letters from ``source``) for each word of ``text``.

    A letter comes from the source when a k-gram of its word containing it is a k-gram of a source word, so
    reordered words, cut words and splices of two words (the echo adapter's ``WATERMS`` from "water ... terms") all
    count as the source's; a word shorter than k counts when it is part of a source word. Order-free on purpose: a
    paraphrase-echo reorders the prompt's words.
    """
    grams = {w[i:i + k] for w in source for i in range(len(w) - k + 1)}
    joined = "\n".join(source)
    out = []
    for w in text:
        if len(w) < k:
            out.append((len(w), len(w) if w in joined else 0))
            continue
        mask = [False] * len(w)
        for i in range(len(w) - k + 1):
            if w[i:i + k] in grams:
                mask[i:i + k] = [True] * k
        out.append((len(w), sum(mask)))
    return out


def covered_share(text: list[str], source: list[str]) -> float:
    """The share of ``text``'s letters that come from ``source``'s words, in any order (see :func:`_coverage`)."""
    cov = _coverage(text, source)
    total = sum(n for n, _ in cov)
    return sum(c for _, c in cov) / total if total else 0.0


# English words that carry no answer: a paraphrase-echo adds them ("how does it work?"). Not yes/no/not, which do.
GLUE = frozenset(("a", "an", "the", "it", "its", "this", "that", "these", "those", "is", "are", "was", "were", "be",
                  "been", "do", "does", "did", "can", "will", "of", "to", "in", "on", "at", "by", "for", "with", "from",
                  "and", "or", "so", "but", "then", "as"))


def new_words(text: list[str], source: list[str]) -> list[str]:
    """Words of ``text`` that are not ``source``'s (more than half of their letters come from elsewhere) nor
    :data:`GLUE`. One is enough to make an answer more than a restatement ("... to the power of 3 is 64": the 64)."""
    return [w for w, (n, c) in zip(text, _coverage(text, source), strict=True) if 2 * (n - c) > n and w not in GLUE]


def _opens_like(answer_word: str, prompt_word: str) -> bool:
    """The answer starts with the prompt's first word, or a cut of it (``WRIT`` for "Write", ``DE`` for "Describe")."""
    m = min(len(answer_word), len(prompt_word), GRAM)
    return m >= 2 and answer_word[:m] == prompt_word[:m]


def _cut_at_the_front(answer: list[str], prompt: list[str]) -> bool:
    """The answer is the prompt's tail starting inside a word (``s between Python and JavaScript`` from "...
    differences between Python and JavaScript"): an echo that lost its front. Starting at a word boundary is not
    enough, since an input the prompt carries can rightly be the answer (events already in order)."""
    n = len(answer)
    return 2 <= n < len(prompt) and answer[1:] == prompt[-(n - 1):] and len(answer[0]) < len(prompt[-n]) \
        and prompt[-n].endswith(answer[0])


def restatement(prompt: str, answer: str, whole: float = 0.9, opening: float = 0.35) -> str | None:
    """Describe an answer that restates the prompt and adds nothing (None when it does not).

    Nothing added: no word of the answer is new (:func:`new_words`). Restated: the answer repeats at least ``whole``
    of the prompt's letters in any order (an echo or a paraphrase-echo), or at least ``opening`` of them and opens
    like the prompt (a cut-down echo: "WHAT PYTHON AND JAVASCRIPT?") or is its tail starting inside a word (an echo
    cut at the front: "s between Python and JavaScript?"). An extraction answer (a span of a context, a label the
    prompt offers) or an edit of an input repeats less of the prompt or starts elsewhere.
    """
    a, p = words(answer), words(prompt)
    if not a or not p or new_words(a, p):
        return None
    restated = covered_share(p, a)
    if restated >= whole:
        return f"restates the prompt: no word of its own, {restated:.0%} of the prompt repeated"
    if restated >= opening and _opens_like(a[0], p[0]):
        return f"restates the prompt's opening: no word of its own, {restated:.0%} of the prompt repeated"
    if restated >= opening and _cut_at_the_front(a, p):
        return f"restates the prompt's end: no word of its own, {restated:.0%} of the prompt repeated"
    return None


def repeated_ngram(text: str, min_repeats: int = 4, min_span: int = 24, max_n: int = 8) -> str | None:
    """A word n-gram (n <= ``max_n``) repeated ``min_repeats``+ times back to back anywhere in ``text`` over at least
    ``min_span`` characters (:func:`repeated_loop` looks at lines and at the tail only). Linear per n: a run of
    positions where each word equals the word n later is a stretch with period n."""
    toks = text.split()
    for n in range(1, max_n + 1):
        run = 0
        for i in range(len(toks) - n):
            run = run + 1 if toks[i] == toks[i + n] else 0
            count = (run + n) // n
            if count >= min_repeats:
                unit = toks[i - run + 1:i - run + 1 + n]
                if count * (len(" ".join(unit)) + 1) >= min_span:
                    return f"{' '.join(unit)[:40]!r} repeated {count} times"
    return None


@functools.lru_cache(maxsize=4096)
def script_name(ch: str) -> str | None:
    """The Unicode script of a letter by its name's first word (``LATIN``, ``CYRILLIC``, ``GREEK``...), with Han,
    Hiragana and Katakana as one ``CJK`` (Japanese mixes them); None for non-letters."""
    if not ch.isalpha():
        return None
    if ch.isascii():
        return "LATIN"
    head = unicodedata.name(ch, "?").split(" ")[0]
    return "CJK" if head in ("HIRAGANA", "KATAKANA", "CJK") else head


def script_mix(text: str) -> dict[str, int]:
    """Letters per script (:func:`script_name`) after NFKC (full-width Latin is Latin)."""
    counts = Counter(map(script_name, unicodedata.normalize("NFKC", text)))
    counts.pop(None, None)
    return {k: v for k, v in counts.items() if k is not None}


def other_script(prompt: str, answer: str, min_letters: int = 8, dominant: float = 0.8) -> str | None:
    """Describe an answer written in another script than the prompt, when that is checkable: the prompt has
    ``min_letters``+ letters, ``dominant`` of them in one script, and the answer has ``min_letters``+ letters, fewer
    than half of them in that script. A mixed-script prompt or a one-word answer is not checkable (None)."""
    p, a = script_mix(prompt), script_mix(answer)
    if sum(p.values()) < min_letters or sum(a.values()) < min_letters:
        return None
    script, count = max(p.items(), key=lambda kv: kv[1])
    if count < dominant * sum(p.values()) or a.get(script, 0) >= 0.5 * sum(a.values()):
        return None
    theirs = max(a.items(), key=lambda kv: kv[1])[0]
    return f"answer in {theirs.title()} script, prompt in {script.title()}"
