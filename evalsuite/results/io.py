"""Reading and writing results files: loading validates everything and reports the first problem as
``file:line: message`` or ``file: field.path: message``; writing validates first (never a file we could not read
back) and is atomic (:func:`evalsuite.files.atomic_write_text`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evalsuite.files import atomic_write_text, read_json
from evalsuite.results.schema import Results
from evalsuite.results.validate import Validator


def results_from_dict(data: Any, path: str | os.PathLike[str] = "<results>") -> Results:
    """Validate a parsed results object; errors name ``path`` and the offending field."""
    return Validator(path).results(data)


def load_results(path: str | os.PathLike[str]) -> Results:
    """Read and validate a results (or baseline) file."""
    p = Path(path)
    results = results_from_dict(read_json(p, what="results"), p)
    results.path = p
    return results


def write_results(results: Results, path: str | os.PathLike[str]) -> None:
    """Validate (so we never write a file we could not read back) and write atomically."""
    data = results.to_dict()
    results_from_dict(data, path)
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
