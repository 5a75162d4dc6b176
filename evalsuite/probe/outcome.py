"""What a probe run leaves the user: the results file (kept elsewhere when the disk refuses it) and the console
summary, one line per battery and column plus the not-run lines."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.files import write_failure
from evalsuite.results.io import write_results
from evalsuite.results.schema import Results, Sample


def write_run(results: Results, out: Path, cache_dir: Path | None) -> None:
    """Write the results; when the disk refuses them (full, read-only), one error that says where the generations
    are kept, so minutes of generation are not lost: the cache (rerunning writes the results without generating),
    else a side file in the temp folder. ``cache_dir``: where every generation is cached (None: not all are)."""
    try:
        write_results(results, out)
    except OSError as e:
        failure = write_failure(e)
        if failure is None:
            raise
        raise EvalsuiteError(f"{failure}; the results were not written. {_kept(results, cache_dir)}") from None


def _kept(results: Results, cache_dir: Path | None) -> str:
    if cache_dir is not None:
        return (f"The generations are kept in the generation cache ({cache_dir}): the same command with a "
                "writable output writes the results without generating again")
    fd, side = tempfile.mkstemp(prefix="evalsuite-results-", suffix=".json")
    os.close(fd)
    try:
        write_results(results, side)
    except OSError:
        Path(side).unlink(missing_ok=True)
        return "They could not be kept anywhere either (is the temp folder on the same full disk?)"
    return f"They are kept in {side}"


def summary_lines(results: Results) -> list[str]:
    """One line per battery and column: accuracy with its CI, the other metrics, the finish reasons; then, when some
    samples were not run, how many and why."""
    lines = []
    for battery in results.batteries():
        for a in results.adapters:
            samples = results.samples_for(battery, a.name)
            if samples:
                lines.append(_summary_line(results, battery, a.name, samples))
    return lines + not_run_lines(results.samples)


def not_run_lines(samples: Iterable[Sample]) -> list[str]:
    """``NOT RUN: n sample(s) ...: why`` per reason (empty when every sample ran): they have no verdict, count in no
    metric, and make the run's exit status 2."""
    reasons = Counter(s.not_run_reason for s in samples if not s.ran)
    return [f"NOT RUN: {n} sample(s) were not generated to the end and are not scored: {why}"
            for why, n in reasons.items()]


def _summary_line(results: Results, battery: str, adapter: str, samples: list[Sample]) -> str:
    metrics = [m for m in results.metrics if m.battery == battery and m.adapter == adapter]
    parts = [f"{m.name} {m.value:.3g}" + (f" [{m.ci_low:.3g}, {m.ci_high:.3g}]"
                                          if m.ci_low is not None and m.ci_high is not None else "")
             for m in metrics]
    reasons: dict[str, int] = {}
    for s in samples:
        reasons[s.finish_reason] = reasons.get(s.finish_reason, 0) + 1
    finish = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    open_blocks = sum(bool(s.details.get("in_reasoning")) for s in samples)
    finish += f"; in-reasoning {open_blocks}" if open_blocks else ""
    ran = [s for s in samples if s.ran]
    skipped = f" +{len(samples) - len(ran)} not run" if len(ran) < len(samples) else ""
    return (f"{battery:<17} {adapter:<14} {sum(bool(s.passed) for s in ran):>4}/{len(ran):<4} "
            f"{'; '.join(parts)}  (finish: {finish}){skipped}")
