"""Drift findings: stable rule ids (like the lint's), a severity, and a message that says what differs and how to fix
it. ``error`` findings make ``evalsuite drift`` exit 1.

Each rule is about one thing (:data:`SUBJECTS`): the template, the stops and the tokens are what a conversion can
break and must be clean whatever the weights; output flips are about the weights, expected when the GGUF is
quantized (:mod:`evalsuite.drift.weights`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalsuite.lint.findings import Rule  # the same rule record: id, default severity, what it catches

_RULES = [
    Rule("gguf-eos-mismatch", "error", "the training end-of-turn token is not an end-of-generation token of the GGUF "
                                       "(llama.cpp's stop set, or the eos/eot ids the GGUF declares)"),
    Rule("gguf-template-missing", "error", "the GGUF embeds no chat template (runtimes fall back to their own)"),
    Rule("gguf-template-differs", "error", "the embedded template renders the battery conversations differently from "
                                           "the training template"),
    Rule("gguf-double-bos", "error", "llama.cpp adds BOS and the template writes it too: prompts start with two"),
    Rule("gguf-tokenization-differs", "error", "llama.cpp turns the battery prompts into other token ids than the HF "
                                               "tokenizer (pre-tokenizer, spaces, added BOS/EOS)"),
    Rule("gguf-vocab-mismatch", "error", "vocabulary size, special token ids, context length or RoPE settings differ "
                                         "from the source config.json and tokenizer"),
    Rule("gguf-output-flips", "error", "battery verdicts flip between the HF source and the GGUF, significantly "
                                       "(exact McNemar at --alpha; a warning when not significant)"),
    Rule("endpoint-template-differs", "error", "the server renders the battery conversations differently from the "
                                               "training template (where it shows its rendering: /apply-template)"),
    Rule("endpoint-no-stop", "error", "the run dir ends its answer (end of turn or turn header) and the endpoint runs "
                                      "on to its token budget: the server does not stop where training stops"),
    Rule("endpoint-output-flips", "error", "battery verdicts flip between the HF source and the endpoint, "
                                           "significantly (exact McNemar at --alpha; a warning when not significant)"),
]
RULES: dict[str, Rule] = {r.id: r for r in _RULES}
SERVING = ("template", "stops", "tokens")  # must be clean: the conversion's part
SUBJECTS = {"gguf-eos-mismatch": "stops", "gguf-template-missing": "template", "gguf-template-differs": "template",
            "gguf-double-bos": "tokens", "gguf-tokenization-differs": "tokens", "gguf-vocab-mismatch": "tokens",
            "gguf-output-flips": "weights",
            # `drift --endpoint` (branch e30): the server's rendering, its stops, and its outputs
            "endpoint-template-differs": "template", "endpoint-no-stop": "stops", "endpoint-output-flips": "weights"}


@dataclass
class Finding:
    rule: str
    message: str
    severity: str = ""
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.severity = self.severity or RULES[self.rule].severity

    @property
    def subject(self) -> str:
        return SUBJECTS[self.rule]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "subject": self.subject, "severity": self.severity, "message": self.message,
                "examples": self.examples}

    def lines(self) -> list[str]:
        return [f"{self.severity} {self.rule}: {self.message}", *(f"    {e}" for e in self.examples)]


def first_difference(a: str, b: str, context: int = 24) -> str:
    """Where two renders part: the character offset and a window of each, quoted."""
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - context)
    return f"at character {at}: {a[start:at + context]!r} vs {b[start:at + context]!r}"
