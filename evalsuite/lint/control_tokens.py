"""Which strings a template writes as control tokens, and how bad it is when the tokenizer splits one.

A control string is any literal the template writes (never the row's data) that is an added token of the tokenizer,
or has the shape of one: ``<|im_start|>``, DeepSeek's full-width ``<｜User｜>``, Mistral's ``[INST]``, Llama-2's
``<<SYS>>``, namespaced ``<seed:bos>``. Shapes are recognised in any script. A split control string is

- an **error** when the tokenizer has it as an added token and encoding still splits it, when the tokenizer's own
  added tokens use the same shape (its family defines such tokens: Mistral v7's ``[SYSTEM_PROMPT]`` on a tokenizer
  with ``[INST]`` tokens but not that one), or when the shape is one no text ever uses (full-width bars, namespaced
  tags: the template expects a tokenizer that has them);
- a **warning** otherwise: the marker is plain text by the model's design (zephyr's ``<|user|>`` and Llama-2's
  ``<<SYS>>`` were never tokens of their tokenizers), which costs tokens and is learned as text.

Plain XML-like tags (``<tools>``, ``<think>``) are text in many templates by design; they count only when the
tokenizer has them as added tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ASCII_BAR = re.compile(r"<\|[^<>|\s]{1,40}\|>")
FULL_BAR = re.compile(r"<\uff5c[^<>\uff5c]{1,40}\uff5c>")
BRACKET = re.compile(r"\[/?[A-Z][A-Z_]{1,30}\]")
DOUBLE_ANGLE = re.compile(r"<</?[A-Z]{2,10}>>")
NAMESPACED = re.compile(r"</?([^\W\d]\w{0,15}):[^<>\s]{1,40}>")
XML = re.compile(r"</?[^\W\d][\w\-.]{0,40}>")
SHAPES = (("ascii-bar", ASCII_BAR), ("full-width-bar", FULL_BAR), ("bracket", BRACKET),
          ("double-angle", DOUBLE_ANGLE), ("namespaced", NAMESPACED))
NEVER_TEXT = ("full-width-bar", "namespaced")  # shapes no prose writes: always meant as a token


def family(token: str) -> str | None:
    """The shape class of a control-looking string (a namespaced tag's family includes its namespace)."""
    for name, pattern in SHAPES:
        m = pattern.fullmatch(token)
        if m is not None:
            return f"namespaced:{m.group(1)}" if name == "namespaced" else name
    return None


def control_strings(literal: str, added: set[str]) -> set[str]:
    """Control strings in a template's literal text: control-looking shapes, and every added token present."""
    found: set[str] = set()
    for _name, pattern in SHAPES:
        found.update(m.group(0) for m in pattern.finditer(literal))
    found.update(m.group(0) for m in XML.finditer(literal) if m.group(0) in added)
    found.update(t for t in added if len(t) > 1 and not t.isspace() and t in literal)
    return found


@dataclass(frozen=True)
class Verdict:
    severity: str  # "error" or "warning"
    why: str


def judge(token: str, added: set[str]) -> Verdict | None:
    """How bad it is that ``token`` is split (None: not a control string worth reporting)."""
    if token in added:
        return Verdict("error", "the tokenizer has it as an added token, but encoding the render still splits it")
    kind = family(token)
    if kind is None:
        return None
    if kind in NEVER_TEXT or kind.startswith("namespaced:"):
        return Verdict("error", "markers of this shape are never text, so the template expects a tokenizer that "
                                "has it as a token: this tokenizer is not the template's")
    if any(family(t) == kind for t in added):
        return Verdict("error", "this tokenizer's own control tokens have that shape, but not this one: the "
                                "template and the tokenizer do not belong together")
    return Verdict("warning", "no control token of this tokenizer has that shape, so it is plain text by the "
                              "model's design (as zephyr's <|user|> and Llama-2's <<SYS>>); it costs tokens and the "
                              "model reads it as text. If the template's model has it as a token, the tokenizer is "
                              "the wrong one")
