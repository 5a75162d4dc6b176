"""Where a lint finding points, for annotations and SARIF: the data rows it names (file + line of a JSONL row, or of
a JSON array's element), else the config line of the key the rule is about, else the file alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
    """The 1-based line on which each element of a top-level JSON array starts (None when ``text`` is not one)."""
    decoder = json.JSONDecoder()
    i = len(text) - len(text.lstrip())
    if not text.startswith("[", i):
        return None
    out: list[int] = []
    line, counted = 1, 0
    i += 1
    try:
        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i >= len(text) or text[i] == "]":
                return out
            line += text.count("\n", counted, i)
            counted = i
            out.append(line)
            _, i = decoder.raw_decode(text, i)
    except json.JSONDecodeError:
        return None


class Locator:
    """Maps findings to locations; reads each data file (and the config) at most once."""

    def __init__(self, report: LintReport, config: Path | None) -> None:
        self.report = report
        self.config = config
        self._array_lines: dict[str, list[int] | None] = {}
        self._config_lines: dict[tuple[str | int, ...], int] | None = None

    def of(self, finding: Finding) -> list[Location]:
        samples = self.report.setup.samples
        rows = [samples[r] for r in finding.rows if 0 <= r < len(samples)]
        if rows:
            return [self.row(s.source, s.row) for s in rows]
        return [self.config_key(RULE_KEYS.get(finding.rule, TEMPLATE_KEYS))]

    def row(self, source: str, row: int) -> Location:
        path = Path(source)
        if not path.is_file():
            return Location(None)
        if path.suffix == ".parquet":
            return Location(source)
        lines = self._lines_of(path)
        if lines is None:  # JSON Lines (also in a .json file): rows are numbered by line
            return Location(source, row)
        return Location(source, lines[row - 1] if 0 < row <= len(lines) else None)

    def _lines_of(self, path: Path) -> list[int] | None:
        key = str(path)
        if key not in self._array_lines:
            lines = None
            if path.suffix == ".json":
                try:
                    lines = json_array_lines(path.read_text(encoding="utf-8-sig"))
                except (OSError, UnicodeDecodeError):
                    lines = None
            self._array_lines[key] = lines
        return self._array_lines[key]

    def config_key(self, keys: tuple[str, ...]) -> Location:
        if self.config is None:
            first = self.report.setup.samples[0].source if self.report.setup.samples else None
            return Location(first if first and Path(first).is_file() else None)
        if self._config_lines is None:
            try:
                self._config_lines = load_yaml(self.config)[1]
            except EvalsuiteError:
                self._config_lines = {}
        line = next((self._config_lines[(k,)] for k in keys if (k,) in self._config_lines), None)
        return Location(str(self.config), line)
