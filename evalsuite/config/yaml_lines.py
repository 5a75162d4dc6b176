"""YAML loading that remembers the line of every key, so config errors can point at ``file:line: key``.

The node graph is walked once per node: an alias (``*a``) reuses the value built for its anchor, as ``yaml.safe_load``
does, so a file of nested aliases (a "billion laughs" bomb) costs what its text costs. What the aliases expand to is
still measured, and a file that would expand past :data:`MAX_VALUES` is refused: every later reader walks the values
as a tree. Duplicate keys are an error naming both lines (YAML's "last one wins" silently trains the wrong setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalsuite.config.limits import MAX_DEPTH, InputLimit, check_value, number_error
from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_text

KeyPath = tuple[str | int, ...]
MAX_VALUES = 1_000_000  # values after expanding aliases; a real config has hundreds


class _Builder:
    """Builds the Python value of each node once, recording key lines along the first path that reaches it."""

    def __init__(self, path: Path, loader: yaml.SafeLoader) -> None:
        self.path, self.loader = path, loader
        self.lines: dict[KeyPath, int] = {}
        self.built: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, values it expands to)
        self.building: set[int] = set()

    def fail(self, node: yaml.Node, message: str) -> EvalsuiteError:
        return EvalsuiteError(f"{self.path}:{node.start_mark.line + 1}: {message}")

    def build(self, node: yaml.Node, path: KeyPath) -> tuple[Any, int]:
        if id(node) in self.built:
            return self.built[id(node)]
        if len(path) > MAX_DEPTH:
            raise self.fail(node, f"invalid YAML: nested more than {MAX_DEPTH} deep")
        if id(node) in self.building:
            raise self.fail(node, "invalid YAML: an alias refers to the collection that contains it (recursive "
                                  "alias)")
        self.building.add(id(node))
        try:
            result = self._mapping(node, path) if isinstance(node, yaml.MappingNode) else \
                self._sequence(node, path) if isinstance(node, yaml.SequenceNode) else \
                (self.loader.construct_object(node, deep=True), 1)
        finally:
            self.building.discard(id(node))
        if result[1] > MAX_VALUES:
            raise self.fail(node, f"invalid YAML: its aliases expand to more than {MAX_VALUES:,} values (an alias "
                                  "bomb?)")
        self.built[id(node)] = result
        return result

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> tuple[dict[Any, Any], int]:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        size = 1
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise self.fail(key_node, f"{key}: duplicate key (first given on line {first_line[key]}); keep one")
            first_line[key] = line
            self.lines[(*path, key)] = line
            out[key], n = self.build(value_node, (*path, key))
            size += n
        return out, size

    def _sequence(self, node: yaml.SequenceNode, path: KeyPath) -> tuple[list[Any], int]:
        items = []
        size = 1
        for i, item in enumerate(node.value):
            self.lines[(*path, i)] = item.start_mark.line + 1
            value, n = self.build(item, (*path, i))
            items.append(value)
            size += n
        return items, size


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Return (data, {key path: 1-based line}). Syntax errors become one located :class:`EvalsuiteError`."""
    text = read_text(path, folder="is a folder, not a YAML file")
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters first: a NUL byte fails here
        builder = _Builder(path, loader)
        node = loader.get_single_node()
        data = builder.build(node, ())[0] if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise EvalsuiteError(f"{path}{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a NUL byte, a control character)
        at = text.count("\n", 0, e.position) + 1
        raise EvalsuiteError(f"{path}:{at}: invalid YAML: character {chr(e.character)!a} is not allowed "
                             f"(offset {e.position})") from None
    except yaml.YAMLError as e:
        raise EvalsuiteError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise EvalsuiteError(f"{path}: invalid YAML: nested more than {MAX_DEPTH} deep") from None
    except ValueError as e:  # an integer of more than 4,300 digits
        raise EvalsuiteError(f"{path}: invalid YAML: {number_error(e)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    try:
        check_value(data, text if "\\" in text else "")  # a lone surrogate can only come from a \u escape
    except InputLimit as e:
        raise EvalsuiteError(f"{path}: {e}") from None
    return data, builder.lines
