"""How a column was given and where its parts came from, as one line for the report's Columns table.

The results file holds the full record (``adapters[].provenance``: paths, hashes, revisions); the report shows what a
reader checks first: which base, which template, tokenizer and stop ids, and from which folder each came.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.results.schema import AdapterInfo


def kind_text(info: AdapterInfo) -> str:
    """``adapter (peft, external)``: the kind, how it was given when that says more, and no evalsuite manifest."""
    parts = [p for p in (info.source if info.source not in (None, info.kind) else None,
                         "external" if info.external else None) if p]
    return f"{info.kind} ({', '.join(parts)})" if parts else info.kind


def _where(value: Any) -> str:
    """A file as ``folder/name`` (the folder says adapter or base; full paths are in the results file)."""
    text = str(value)
    if "/" not in text:
        return text
    p = Path(text)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def provenance_text(info: AdapterInfo) -> str:
    p = info.provenance or {}
    if not p:
        return "–"
    out = []
    base = p.get("base") or {}
    if base:
        hub = f", hub cache rev {str(base.get('revision'))[:12]}" if base.get("hub_id") else ""
        out.append(f"base from {base.get('from')}{hub}")
    if p.get("checkpoint"):
        out.append(f"{p['checkpoint'].get('name')} of {_where(p['checkpoint'].get('output_dir'))}")
    if p.get("hub_id"):
        out.append(f"adapter from hub cache {p['hub_id']}")
    for part in ("template", "tokenizer"):
        if isinstance(p.get(part), dict):
            out.append(f"{part} from {p[part].get('from')} ({_where(p[part].get('file'))})")
    stops = p.get("stops")
    if isinstance(stops, dict):
        out.append(f"stops {stops.get('ids')} from {', '.join(_where(s) for s in stops.get('from') or [])}")
    return "; ".join(out)
