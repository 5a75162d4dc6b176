"""Token budgets and finish reasons per battery and column: a battery's cap explains its ``max-tokens`` share
(SQuAD's 32-token cap, not the model, can be why an answer ran out), so they are shown side by side."""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.report.columns import Column
from evalsuite.results.schema import FINISH_REASONS

CAPPED = "max-tokens"


@dataclass
class BudgetCell:
    cap: int
    counts: dict[str, int]
    mean_tokens: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, reason: str) -> float:
        return self.counts.get(reason, 0) / self.total if self.total else 0.0

    @property
    def capped(self) -> float:
        """Share of samples that ran into the cap."""
        return self.share(CAPPED)


@dataclass
class BudgetRow:
    battery: str
    cells: list[BudgetCell | None]  # one per column, None where the column did not run the battery


def budget_cell(col: Column, battery: str) -> BudgetCell | None:
    samples = col.results.samples_for(battery, col.name)
    if not samples:
        return None
    counts = {r: 0 for r in FINISH_REASONS}
    for s in samples:
        counts[s.finish_reason] = counts.get(s.finish_reason, 0) + 1
    return BudgetCell(col.cap(battery), counts, sum(s.tokens for s in samples) / len(samples))
