"""`--adapter http://HOST:PORT/v1` in the pytest plugin: an endpoint column beside the others, its own flags
(`--probe-served-model`, `--probe-concurrency`), items that pass and fail as the stub answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from endpoint_support import StubServer, completion
from fake_engine import MINI

pytest_plugins = ["pytester"]



def test_an_endpoint_is_a_column_in_the_plugin(pytester: pytest.Pytester) -> None:
    (pytester.path / "mini.yaml").write_text(MINI, encoding="utf-8")
    pytester.makeini("[pytest]\n")

    def one_wrong(n: int, body: dict[str, Any]) -> Any:
        last = body["messages"][-1]["content"]
        return (200, completion("nope"), {}) if last == "abc def" else None

    with StubServer(one_wrong, models=("a", "b")) as stub:
        out = pytester.path / "results.json"
        result = pytester.runpytest_subprocess("-m", "probes", "--adapter", stub.url, "--battery", "mini.yaml",
                                               "--probe-served-model", "b", "--probe-concurrency", "2",
                                               "--probe-out", str(out), "-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*mini*endpoint-b-abc-def*"])
    assert {b["model"] for b in stub.bodies} == {"b"} and len(stub.bodies) == 3
    data = json.loads(out.read_text())
    assert [a["kind"] for a in data["adapters"]] == ["endpoint"]
    assert data["engine"]["columns"][data["adapters"][0]["name"]]["concurrency"] == 2
