"""Word-level differences between two outputs, as segments the templates mark up (escaped)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Segment:
    """A run of ``text``; ``changed`` when it is not in the reference output."""

    text: str
    changed: bool


def diff_segments(reference: str, text: str) -> list[Segment]:
    """Split ``text`` into runs that also appear in ``reference`` and runs that do not.

    Tokens are words, single punctuation marks and whitespace runs, so a one-letter typo marks one
    word rather than the whole line, and changed whitespace (a stray newline) is marked too.
    """
    ref_tokens = _TOKEN.findall(reference)
    tokens = _TOKEN.findall(text)
    matcher = difflib.SequenceMatcher(a=ref_tokens, b=tokens, autojunk=False)
    runs = [("".join(tokens[j1:j2]), tag != "equal") for tag, _i1, _i2, j1, j2 in matcher.get_opcodes()
            if j1 != j2]
    # Spaces between two changed words belong to the change: "something else" is one mark, not two.
    runs = [(text, changed or (0 < i < len(runs) - 1 and not text.strip() and runs[i - 1][1] and runs[i + 1][1]))
            for i, (text, changed) in enumerate(runs)]
    out: list[Segment] = []
    for chunk, changed in runs:
        if out and out[-1].changed == changed:
            out[-1] = Segment(out[-1].text + chunk, changed)
        else:
            out.append(Segment(chunk, changed))
    return out
