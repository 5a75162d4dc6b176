"""The report's columns: (results file, adapter) pairs, grouped by base model, each with its control.

A delta is always *candidate - control* and only between columns on the same base model:

- with ``--baseline``: the control of a column is the baseline column the regression gates pair it with (same
  adapter name, else the same role), provided it is on the same base model;
- otherwise: the base-model column of the same file (else of the same base model); an adapter in a group with no
  base column is compared with the group's first column, and the report says so.

Settings that change what a model can answer (a battery's token cap, the seed, the engine, sampling, stop
strings) are compared between every candidate and its control; a difference becomes a banner, so a 16-token run
is never silently "significantly worse" than a 160-token one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.gates.evaluate import pair_adapter
from evalsuite.results.schema import AdapterInfo, Results

# Engine settings that are bookkeeping (or, like the batch size, do not change a greedy answer).
BOOKKEEPING_SETTINGS = frozenset({"generated", "cached", "versions", "device", "processes", "skipped_batteries",
                                  "max_batch_seconds", "batch_size", "max_new_tokens_per_battery"})


def battery_cap(results: Results, battery: str) -> int:
    """The battery's ``max_new_tokens`` as the run recorded it (older files: the engine's one cap)."""
    per = results.engine.settings.get("max_new_tokens_per_battery")
    if isinstance(per, dict) and isinstance(per.get(battery), int):
        return int(per[battery])
    return results.engine.max_new_tokens


@dataclass(eq=False)
class Column:
    label: str
    file: str
    results: Results
    adapter: AdapterInfo
    is_baseline: bool = False
    ref: Column | None = None  # the control this column's deltas are measured against
    is_control: bool = False  # some other column's control

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def base_model(self) -> str:
        return self.adapter.base_model

    def cap(self, battery: str) -> int:
        return battery_cap(self.results, battery)


@dataclass
class Group:
    """Columns on one base model: deltas never cross groups."""

    base_model: str
    columns: list[Column]


@dataclass
class Layout:
    columns: list[Column]
    groups: list[Group]
    notes: list[str] = field(default_factory=list)  # what was merged, dropped or has no control
    banners: list[str] = field(default_factory=list)  # what a reader must know before trusting a delta


def make_layout(files: list[tuple[str, Results]], baseline: tuple[str, Results] | None) -> Layout:
    cols, merged = _columns(files, baseline)
    groups: dict[str, list[Column]] = {}
    for c in cols:
        groups.setdefault(c.base_model, []).append(c)
    cols = [c for members in groups.values() for c in members]
    _label(cols)
    layout = Layout(cols, [Group(b, members) for b, members in groups.items()])
    layout.notes += [f"{file}:{name} has the same outputs as {kept.label} and is shown once, as {kept.label}"
                     for file, name, kept in merged]
    _assign_controls(layout, baseline is not None)
    if len(layout.groups) > 1:
        parts = "; ".join(f"{g.base_model}: {', '.join(c.label for c in g.columns)}" for g in layout.groups)
        layout.banners.append(f"The columns are on {len(layout.groups)} base models ({parts}). Deltas are "
                              "computed only within a base model; columns on different bases are not compared.")
    layout.banners += settings_banners(cols)
    return layout


def _columns(files: list[tuple[str, Results]],
             baseline: tuple[str, Results] | None) -> tuple[list[Column], list[tuple[str, str, Column]]]:
    """One column per (file, adapter); a base column with the same outputs as an earlier one is merged into it."""
    cols: list[Column] = []
    merged: list[tuple[str, str, Column]] = []
    sources = ([(baseline[0], baseline[1], True)] if baseline else []) + [(f, r, False) for f, r in files]
    for file, results, is_base_file in sources:
        for info in results.adapters:
            same = next((c for c in cols if info.kind == "base" and _same_outputs(c, results, info)), None)
            if same is not None:
                merged.append((file, info.name, same))
                continue
            cols.append(Column("", file, results, info, is_baseline=is_base_file))
    return cols, merged


def _same_outputs(col: Column, results: Results, info: AdapterInfo) -> bool:
    if col.adapter.kind != "base" or col.base_model != info.base_model:
        return False

    def key(r: Results, name: str) -> list[tuple[str, str, str]]:
        return sorted((s.battery, s.case, s.output) for s in r.samples if s.adapter == name)

    return key(col.results, col.name) == key(results, info.name)


def _label(cols: list[Column]) -> None:
    """The adapter name; ``file:name`` when two candidate columns share it; ``name (baseline)`` for the baseline."""
    names = [c.name for c in cols if not c.is_baseline]
    for c in cols:
        if c.is_baseline:
            c.label = f"{c.name} (baseline)"
        else:
            c.label = c.name if names.count(c.name) == 1 else f"{c.file}:{c.name}"


def _assign_controls(layout: Layout, with_baseline: bool) -> None:
    for group in layout.groups:
        if not with_baseline and not any(c.adapter.kind == "base" for c in group.columns):
            layout.notes.append(f"no base-model column on {group.base_model}: " + (
                f"deltas are against {group.columns[0].label}" if len(group.columns) > 1
                else f"{group.columns[0].label} has nothing to be compared with"))
        for c in group.columns:
            if c.is_baseline:
                continue
            c.ref = _baseline_control(c, group) if with_baseline else _control(c, group)
            if c.ref is not None:
                c.ref.is_control = True
            elif with_baseline:
                layout.notes.append(f"{c.label}: no baseline column on {c.base_model} to compare with; no deltas")


def _control(col: Column, group: Group) -> Column | None:
    if col.adapter.kind == "base":
        return None
    bases = [c for c in group.columns if c.adapter.kind == "base"]
    own = [c for c in bases if c.file == col.file]
    first = (own or bases or group.columns)[0]
    return first if first is not col else None


def _baseline_control(col: Column, group: Group) -> Column | None:
    bases = [c for c in group.columns if c.is_baseline]
    if not bases:
        return None
    try:
        name = pair_adapter(col.results, bases[0].results, col.name)
        return next(b for b in bases if b.name == name)
    except (EvalsuiteError, StopIteration):  # no unambiguous pairing on this base: the first of the same role
        same_kind = [b for b in bases if b.adapter.kind == col.adapter.kind]
        return same_kind[0] if same_kind else None


def run_settings(results: Results) -> dict[str, Any]:
    """What a generation depended on, beyond the model: engine, seed and generation settings."""
    out: dict[str, Any] = {"engine": results.engine.name, "seed": results.engine.seed}
    out.update({k: v for k, v in results.engine.settings.items() if k not in BOOKKEEPING_SETTINGS})
    return out


def settings_diff(control: Column, col: Column) -> list[str]:
    """Human phrases for each setting that differs between a column and its control."""
    if col.results is control.results:
        return []
    out = []
    mine, theirs = run_settings(col.results), run_settings(control.results)
    for key in dict.fromkeys([*theirs, *mine]):
        if mine.get(key) != theirs.get(key):
            out.append(f"{key} {_show(mine.get(key))} vs {_show(theirs.get(key))}")
    shared = [b for b in col.results.batteries() if b in control.results.batteries()]
    out += [f"{b} max_new_tokens {col.cap(b)} vs {control.cap(b)}" for b in shared if col.cap(b) != control.cap(b)]
    return out


def _show(value: Any) -> str:
    return "unset" if value is None else str(value)


def settings_banners(cols: list[Column]) -> list[str]:
    out: list[str] = []
    for c in cols:
        diffs = settings_diff(c.ref, c) if c.ref is not None else []
        if diffs:
            line = (f"{c.label} ran with other settings than its control {c.ref.label if c.ref else ''}: "
                    f"{'; '.join(diffs)}. Its deltas mix the adapter's effect with these.")
            if line not in out:
                out.append(line)
    return out
