"""YAML loading that remembers the line of every key, so config errors can point at ``file:line: key``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalsuite.errors import EvalsuiteError

KeyPath = tuple[str | int, ...]


def _construct(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*path, key), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_construct(item, (*path, i), lines, loader))
        return items
    return loader.construct_object(node, deep=True)


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Return (data, {key path: 1-based line}). Syntax errors become one located :class:`EvalsuiteError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalsuiteError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise EvalsuiteError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise EvalsuiteError(f"{path}: cannot read: {e.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = _construct(node, (), lines, loader) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise EvalsuiteError(f"{path}{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise EvalsuiteError(f"{path}: invalid YAML: {e}") from None
    finally:
        loader.dispose()
    return data, lines
