"""Where a lint finding points, for annotations and SARIF: the data rows it names (file + line of a JSONL row, or of
a JSON array's element), else the config line of the key the rule is about, else the file alone."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from evalsuite.config.records import ArrayReader
from evalsuite.config.rows import Sample
from evalsuite.config.yaml_lines import load_yaml
from evalsuite.errors import EvalsuiteError
from evalsuite.lint.findings import Finding
from evalsuite.lint.runner import LintReport

# Config keys a rule without rows is about, most specific first; the template keys otherwise.
TEMPLATE_KEYS = ("chat_template_jinja", "chat_template", "tokenizer_config", "base_model")
RULE_KEYS: dict[str, tuple[str, ...]] = {
    "stop-token-not-generated": ("special_tokens", "base_model"),
    "packing-contamination": ("sample_packing", "lint_collator"),
    "prompt-trained": ("train_on_inputs",),
    "eos-truncated": ("sequence_len",),
    "no-trainable-tokens": ("sequence_len",),
    "vocab-out-of-range": ("special_tokens", "base_model"),
    "untrained-special-embeddings": ("lora_modules_to_save", "base_model"),
    "tokenizer-not-replayed": ("tokenizer_config", "base_model"),
    "control-token-split": (*TEMPLATE_KEYS[:2], "special_tokens", *TEMPLATE_KEYS[2:]),
}


@dataclass(frozen=True)
class Location:
    path: str | None  # None: no file (a hub dataset, say)
    line: int | None = None


def json_array_lines(text: str) -> list[int] | None:
    """The 1-based line on which each element of a top-level JSON array starts (None when ``text`` is not one); the
    data reader gives each row its line the same way (``config.records``)."""
    if not text.lstrip().startswith("["):
        return None
    try:
        return [line for _row, line, _value in ArrayReader(io.StringIO(text))]
    except json.JSONDecodeError:
        return None


class Locator:
    """Maps findings to locations: a row's file and the line it starts on (read with the row); the config's lines
    are read at most once."""

    def __init__(self, report: LintReport, config: Path | None) -> None:
        self.report = report
        self.config = config
        self._config_lines: dict[tuple[str | int, ...], int] | None = None

    def of(self, finding: Finding) -> list[Location]:
        kept = self.report.kept
        rows = [kept[r] for r in finding.rows if r in kept]
        if rows:
            return [self.row(s) for s in rows]
        return [self.config_key(RULE_KEYS.get(finding.rule, TEMPLATE_KEYS))]

    @staticmethod
    def row(sample: Sample) -> Location:
        if not Path(sample.source).is_file():
            return Location(None)
        return Location(sample.source, sample.line)  # no line: a parquet file

    def config_key(self, keys: tuple[str, ...]) -> Location:
        if self.config is None:
            first = self.report.kept[0].source if 0 in self.report.kept else None
            return Location(first if first and Path(first).is_file() else None)
        if self._config_lines is None:
            try:
                self._config_lines = load_yaml(self.config)[1]
            except EvalsuiteError:
                self._config_lines = {}
        line = next((self._config_lines[(k,)] for k in keys if (k,) in self._config_lines), None)
        return Location(str(self.config), line)
