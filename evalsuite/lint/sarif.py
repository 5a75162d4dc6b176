"""The lint as SARIF 2.1.0, the format code-scanning UIs (GitHub's `upload-sarif`) read to show findings inline.

One run; ``tool.driver.rules`` is the lint's rule table (id, what it catches, default level); each finding gives one
result per location (the data rows it names, else the config line), with URIs relative to the working directory
(the checkout root in CI). Ignored findings stay in the log, marked as suppressed, as the text view keeps them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite import __version__
from evalsuite.github import relative_path
from evalsuite.lint.findings import RULES
from evalsuite.lint.locations import Location, Locator
from evalsuite.lint.runner import LintReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _rules() -> list[dict[str, Any]]:
    return [{"id": r.id, "name": r.id, "shortDescription": {"text": r.catches},
             "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]}} for r in RULES.values()]


def _location(loc: Location) -> dict[str, Any]:
    assert loc.path is not None
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(loc.path)}}
    if loc.line is not None:
        physical["region"] = {"startLine": loc.line}
    return {"physicalLocation": physical}


def _uri(path: str) -> str:
    rel = relative_path(path)
    return Path(rel).resolve().as_uri() if Path(rel).is_absolute() else rel


def sarif_log(report: LintReport, config: Path | None = None) -> dict[str, Any]:
    locator = Locator(report, config)
    index = {rule_id: i for i, rule_id in enumerate(RULES)}
    results = []
    for f in report.findings:
        locations: list[Location | None] = [loc for loc in locator.of(f) if loc.path is not None]
        message = f.message + (f" ({f.count} rows)" if f.count > 1 and f.rows else "")
        for loc in locations or [None]:
            result: dict[str, Any] = {"ruleId": f.rule, "ruleIndex": index[f.rule], "level": SARIF_LEVEL[f.severity],
                                      "message": {"text": message}}
            if loc is not None:
                result["locations"] = [_location(loc)]
            if f.ignored:
                result["suppressions"] = [{"kind": "external", "justification": "ignored on purpose (--ignore or "
                                                                                "the config's ignore: list)"}]
            results.append(result)
    run = {"tool": {"driver": {"name": "evalsuite", "version": __version__, "rules": _rules()}},
           "results": results}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def format_sarif(report: LintReport, config: Path | None = None) -> str:
    return json.dumps(sarif_log(report, config), ensure_ascii=False, indent=2) + "\n"
