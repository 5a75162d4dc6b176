"""Findings and the rule registry: every rule has a stable id, a default severity and one line saying what it
catches. Rules are pure predicates over what the lint computed (shapes, rows, setup); they return findings and never
print. Severity: ``error`` blocks (exit 1), ``warning`` and ``info`` do not; ``--ignore RULE`` (or ``ignore:`` in
the config) keeps a finding in the report but marks it ignored, so it never blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    catches: str


_RULES = [
    Rule("eos-not-trained", "error", "the assistant turn's terminator is never a trained label"),
    Rule("stop-token-not-generated", "error", "a trained terminator holds none of the ids the server stops on"),
    Rule("open-turn-at-end", "error", "a training sample ends with an opened assistant header"),
    Rule("missing-generation-prompt", "error", "add_generation_prompt is absent or renders nothing"),
    Rule("control-token-split", "error", "a control string of the template is not one token in this tokenizer "
         "(a warning when the tokenizer's family never had it as a token)"),
    Rule("special-text-in-content", "warning", "message content contains text encoded as control tokens"),
    Rule("train-infer-mismatch", "error", "the inference prompt is not a token prefix of the training sequence"),
    Rule("not-prefix-preserving", "warning", "rendering k+1 turns does not extend the rendering of k turns"),
    Rule("boundary-shift", "warning", "tokenize(prompt) is not a prefix of tokenize(prompt + completion)"),
    Rule("no-trainable-tokens", "warning", "a row has no trained label (the trainer drops it)"),
    Rule("eos-truncated", "warning", "truncation keeps the answer but cuts its terminator"),
    Rule("double-bos", "warning", "BOS appears twice at the start of a sequence"),
    Rule("missing-bos", "warning", "the tokenizer adds BOS to plain text but training sequences lack it"),
    Rule("double-eos", "warning", "the same terminator twice in a row"),
    Rule("template-error", "error", "the template raises for a role sequence present in the data"),
    Rule("role-not-in-template", "error", "a role in the data is never rendered by the template"),
    Rule("injected-text", "warning", "the template adds text that is not in the data"),
    Rule("prompt-trained", "error", "prompt tokens are trained although train_on_inputs is false"),
    Rule("packing-contamination", "error", "packed samples can attend to each other"),
    Rule("vocab-out-of-range", "error", "a token id is not below the model's vocabulary size"),
    Rule("unicode-roundtrip", "error", "decode(encode(text)) != text for assistant targets"),
    Rule("untrained-special-embeddings", "error", "special tokens the template uses have untrained embedding rows"),
    Rule("span-mismatch", "warning", "generation tags and the render diff disagree on what the assistant says"),
    Rule("tokenizer-not-replayed", "warning", "transformers rebuilds this tokenizer class in a way the lint cannot"),
    Rule("reasoning-dropped", "error", "reasoning in the data is missing from the training text of its turn"),
    Rule("empty-reasoning", "warning", "trained answers hold an empty reasoning block the data did not write"),
    Rule("tools-ignored", "error", "the row gives tools but the template never renders them"),
    Rule("tool-calls-dropped", "error", "an assistant message's tool calls are missing from the training text"),
    Rule("tool-call-as-text", "warning", "a call of a declared tool is written as plain answer text"),
]
RULES: dict[str, Rule] = {r.id: r for r in _RULES}


@dataclass
class Finding:
    rule: str
    message: str
    count: int = 1
    severity: str = ""
    rows: list[int] = field(default_factory=list)  # indices into the sample list, for examples
    examples: list[dict[str, Any]] = field(default_factory=list)
    ignored: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown lint rule {self.rule!r}")
        self.severity = self.severity or RULES[self.rule].severity
        if self.severity not in SEVERITIES:
            raise ValueError(f"bad severity {self.severity!r}")

    @property
    def blocking(self) -> bool:
        return self.severity == "error" and not self.ignored

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "message": self.message, "count": self.count,
                "ignored": self.ignored, "examples": self.examples}


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.blocking for f in findings) else 0
