"""Helpers for the report tests: a small HTML reader (tables as rows of cell texts, with classes), Markdown table
splitting, and the results factory (tests/data/results/factory.py) loaded as a module."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "results"
VOID = {"br", "img", "input", "meta", "link", "hr", "col", "wbr"}


def load_factory() -> Any:
    spec = importlib.util.spec_from_file_location("results_factory", DATA / "factory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Cell:
    tag: str
    classes: list[str]
    text: str = ""
    html_classes: list[str] = field(default_factory=list)  # classes of the elements inside the cell


@dataclass
class Row:
    classes: list[str]
    cells: list[Cell] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.cells]


@dataclass
class Table:
    classes: list[str]
    section: str  # the id of the nearest element with an id before the table
    rows: list[Row] = field(default_factory=list)


class Document(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.img_alts: list[str] = []
        self.tables: list[Table] = []
        self.ids: list[str] = []
        self.texts: dict[str, list[str]] = {}  # class -> text of each element with that class
        self._open: list[tuple[str, list[str], list[str]]] = []  # tag, classes, text parts
        self._tables: list[Table] = []
        self._cell: Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        d = dict(attrs)
        classes = (d.get("class") or "").split()
        if d.get("id"):
            self.ids.append(d["id"] or "")
        if tag == "img":
            self.srcs.append(d.get("src") or "")
            self.img_alts.append(d.get("alt") or "")
        if tag == "link" and d.get("href"):
            self.hrefs.append(d["href"] or "")
        if tag == "table":
            table = Table(classes, self.ids[-1] if self.ids else "")
            self.tables.append(table)
            self._tables.append(table)
        elif tag == "tr" and self._tables:
            self._tables[-1].rows.append(Row(classes))
        elif tag in ("td", "th") and self._tables and self._tables[-1].rows:
            self._cell = Cell(tag, classes)
            self._tables[-1].rows[-1].cells.append(self._cell)
        elif self._cell is not None:
            self._cell.html_classes += classes
        if tag == "br" and self._cell is not None:
            self._cell.text += "\n"
        if tag not in VOID:
            self._open.append((tag, classes, []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._tables:
            self._tables.pop()
        if tag in ("td", "th"):
            self._cell = None
        while self._open:
            open_tag, classes, parts = self._open.pop()
            text = "".join(parts)
            for c in classes:
                self.texts.setdefault(c, []).append(text)
            if self._open:
                self._open[-1][2].append(text)
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)
        if self._cell is not None:
            self._cell.text += data

    def table(self, cls: str) -> Table:
        return next(t for t in self.tables if cls in t.classes)

    def in_section(self, section: str) -> list[Table]:
        return [t for t in self.tables if t.section == section]


def parse(html: str) -> Document:
    doc = Document()
    doc.feed(html)
    return doc


def md_tables(md: str) -> list[tuple[str, list[str]]]:
    """(header line, body lines) of every Markdown table."""
    lines = md.splitlines()
    out = []
    for i, line in enumerate(lines):
        if re.match(r"^\|(-+:?\|)+$", line):
            body = []
            j = i + 1
            while j < len(lines) and lines[j].startswith("| "):
                body.append(lines[j])
                j += 1
            out.append((lines[i - 1], body))
    return out


def md_cells(line: str) -> list[str]:
    """The cells of a Markdown table row (escaped pipes stay inside their cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
