"""Metrics shipped with evalsuite as ``evaluate`` modules, loaded from their local path (offline, no hub).

Each metric is implemented once, in its module folder; the scorers import the same functions the ``evaluate``
module wraps, so a per-case score and the module's aggregate can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SQUAD_V11_DIR = Path(__file__).resolve().parent / "squad_v11"


def load_squad_v11() -> Any:
    """The SQuAD v1.1 metric as an ``evaluate`` module, from this package's folder (never the hub)."""
    import evaluate

    return evaluate.load(str(SQUAD_V11_DIR))
