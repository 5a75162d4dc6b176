"""Records of a local JSON Lines file or JSON array file, read as a stream: ``(row, line, record)``.

Nothing here holds more than one record and one read block at a time, so a dataset of a million rows is read in
constant memory. JSON Lines rows are numbered by line (blank lines skipped). A JSON array (``.json`` starting with
``[``, the alpaca and ShareGPT files) is parsed element by element with ``json.JSONDecoder.raw_decode`` over a
buffer that is refilled as it is consumed; rows are numbered from 1 and each carries the line its element starts on
(what ``--format github`` annotations point at). Errors name the file and line: ``invalid JSON: MSG (column N)``
with json's own message, and ``not UTF-8 text (byte 0x.. at offset N)``.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from evalsuite.config.limits import MAX_DEPTH, MAX_ROW_CHARS, InputLimit, check_value, loads_json, number_error
from evalsuite.errors import EvalsuiteError

BLOCK = 1 << 20  # characters read at a time from a JSON array file
_WS = " \t\n\r"
_NUMBER = "0123456789.eE+-"  # what may follow a number's prefix that parses on its own


def _open(path: Path) -> IO[str]:
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise EvalsuiteError(f"{path}: no such file") from None
    except OSError as e:
        raise EvalsuiteError(f"{path}: cannot read: {e.strerror}") from None
    # newline=None reads \r\n and \r as \n, as str.splitlines and json's line numbers saw them
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline=None)


def _not_utf8(path: Path) -> EvalsuiteError:
    """The first byte that is not UTF-8, with its line and offset (read again, in blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    fed = lines = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            pending = decoder.getstate()[0]
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                data = pending + block
                at = len(data) - len(e.object) + e.start  # e.object is data, or data after a BOM
                line = lines + data.count(b"\n", 0, at) + 1
                return EvalsuiteError(f"{path}:{line}: not UTF-8 text (byte 0x{data[at]:02x} at offset "
                                      f"{fed - len(pending) + at})")
            fed += len(block)
            lines += block.count(b"\n")
    return EvalsuiteError(f"{path}:{lines + 1}: not UTF-8 text (the file ends inside a character)")


def iter_records(path: Path) -> Iterator[tuple[int, int, Any]]:
    """Yield (row number, line, record) from a .json array or a JSON Lines file."""
    try:
        first = _first_char(path)
        if path.suffix == ".json" and first == "[":
            yield from _array(path)
        elif path.suffix == ".json" and first == "{" and not _first_line_is_json(path):
            _one_value(path)
        else:
            yield from _lines(path)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _first_char(path: Path) -> str:
    with _open(path) as fh:
        while True:
            block = fh.read(4096)
            if not block:
                return ""
            rest = block.lstrip()
            if rest:
                return rest[0]


def _first_line_is_json(path: Path) -> bool:
    with _open(path) as fh:
        line = fh.readline(MAX_ROW_CHARS + 2)
    try:
        loads_json(line)
    except json.JSONDecodeError:
        return False
    except InputLimit:
        return True  # JSON Lines whose first row is past a limit: the line reader says so, with the line
    return True


def _one_value(path: Path) -> None:
    """A .json file whose first line is not a whole value: one pretty-printed object (SQuAD's ``{"data": ...}``),
    which is not a list of records, or broken JSON. Either way an error."""
    with _open(path) as fh:
        text = fh.read()
    try:
        keys = sorted(loads_json(text))[:5]
    except json.JSONDecodeError as e:
        raise EvalsuiteError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    except InputLimit as e:
        raise EvalsuiteError(f"{path}: {e}") from None
    raise EvalsuiteError(f"{path}:1: expected a JSON array of records or JSON Lines, got one object with keys {keys}")


def _lines(path: Path) -> Iterator[tuple[int, int, Any]]:
    with _open(path) as fh:
        # readline with a limit: a 50 MB row is refused after reading 4 MiB of it, not parsed and rendered
        for lineno, line in enumerate(iter(lambda: fh.readline(MAX_ROW_CHARS + 2), ""), start=1):
            if len(line) > MAX_ROW_CHARS + 1:
                raise EvalsuiteError(f"{path}:{lineno}: the row is longer than {MAX_ROW_CHARS:,} characters (the "
                                     "limit for one row)")
            if not line.strip():
                continue
            try:
                record = loads_json(line)
            except json.JSONDecodeError as e:
                raise EvalsuiteError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
            except InputLimit as e:
                raise EvalsuiteError(f"{path}:{lineno}: {e}") from None
            yield lineno, lineno, record


def _array(path: Path) -> Iterator[tuple[int, int, Any]]:
    with _open(path) as fh:
        reader = ArrayReader(fh)
        try:
            yield from reader
        except json.JSONDecodeError as e:
            line, column = reader.where(e.pos)
            raise EvalsuiteError(f"{path}:{line}: invalid JSON: {e.msg} (column {column})") from None
        except InputLimit as e:
            raise EvalsuiteError(f"{path}:{reader.where(reader.start)[0]}: {e}") from None


class ArrayReader:
    """The elements of one top-level JSON array, parsed from a text stream as it is read.

    ``buf`` holds the unconsumed text; ``lines`` counts the line breaks before it and ``column`` the characters
    between the last of them and its start, so positions inside ``buf`` map to the file's line and column (line
    breaks up to ``mark`` are counted once, in ``mark_lines``). A failed parse is retried with more text until the
    stream ends (a record may span reads); a value followed by nothing but number characters up to the end of the
    buffer is parsed again with more text too (``0.`` may be the start of ``0.5``). The buffer grows only to hold
    one element."""

    def __init__(self, fh: IO[str], block: int | None = None) -> None:
        self.fh = fh
        self.block = block or BLOCK
        self.buf = ""
        self.eof = False
        self.lines = self.column = 0
        self.mark = self.mark_lines = 0
        self.decoder = json.JSONDecoder()
        self.start = 0  # where the element being parsed starts in buf (for errors)

    def where(self, pos: int) -> tuple[int, int]:
        """(1-based line, 1-based column) of ``buf[pos]``."""
        line = self.lines + self.buf.count("\n", 0, pos) + 1
        k = self.buf.rfind("\n", 0, pos)
        return line, (pos - k if k >= 0 else self.column + pos + 1)

    def _line(self, pos: int) -> int:
        """1-based line of ``buf[pos]``, for positions that only move forward."""
        self.mark_lines += self.buf.count("\n", self.mark, pos)
        self.mark = pos
        return self.lines + self.mark_lines + 1

    def _more(self, pos: int) -> int:
        """Drop ``buf[:pos]`` and read more (at least as much again as is buffered); the new index of ``pos``."""
        done = self.buf[:pos]
        k = done.rfind("\n")
        self.column = len(done) - k - 1 if k >= 0 else self.column + len(done)
        self.lines += done.count("\n")
        self.mark = self.mark_lines = 0
        chunk = self.fh.read(max(self.block, len(self.buf) - pos))
        self.eof = not chunk
        self.buf = self.buf[pos:] + chunk
        return 0

    def _skip(self, pos: int) -> int:
        """Index of the next non-whitespace character (== len(buf) only at the end of the stream)."""
        while True:
            while pos < len(self.buf) and self.buf[pos] in _WS:
                pos += 1
            if pos < len(self.buf) or self.eof:
                return pos
            pos = self._more(pos)

    def _value(self, pos: int) -> tuple[Any, int, int]:
        """(value, start, end) of the value at ``pos`` (the start moves when the buffer is refilled)."""
        while True:
            self.start = pos
            try:
                value, end = self.decoder.raw_decode(self.buf, pos)
            except json.JSONDecodeError:
                if self.eof:
                    raise
                if len(self.buf) - pos > MAX_ROW_CHARS:  # no end in sight: refuse instead of buffering it all
                    raise InputLimit(f"the row is longer than {MAX_ROW_CHARS:,} characters (the limit for one row)"
                                     ) from None
                pos = self._more(pos)
                continue
            except RecursionError:
                raise InputLimit(f"nested more than {MAX_DEPTH} deep") from None
            except ValueError as e:  # an integer of more than 4,300 digits
                raise InputLimit(number_error(e)) from None
            if self.eof or self.buf[end:].strip(_NUMBER):
                if end - pos > MAX_ROW_CHARS:
                    raise InputLimit(f"the row is longer than {MAX_ROW_CHARS:,} characters (the limit for one row)")
                check_value(value, self.buf[pos:end])
                return value, pos, end
            pos = self._more(pos)  # "1" of "1.5", or "0" of "0e3": a number may go on in the next block

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        pos = self._skip(0)
        if not self.buf.startswith("[", pos):
            raise json.JSONDecodeError("Expecting '['", self.buf, pos)
        pos = self._skip(pos + 1)
        row = 0
        while not self.buf.startswith("]", pos):
            if row:
                if not self.buf.startswith(",", pos):
                    raise json.JSONDecodeError("Expecting ',' delimiter", self.buf, pos)
                pos = self._skip(pos + 1)
            value, start, pos = self._value(pos)
            row += 1
            yield row, self._line(start), value
            pos = self._skip(pos)
        pos = self._skip(pos + 1)
        if pos < len(self.buf):
            raise json.JSONDecodeError("Extra data", self.buf, pos)
