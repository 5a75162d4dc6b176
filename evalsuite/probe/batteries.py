"""Probe batteries: data files (YAML, cases inline or in JSONL) loaded and validated into :class:`Battery`.

A battery file::

    name: uppercase-echo              # default: the file name
    description: ...
    scorer: exact_match               # or {name: exact_match, args: {strip: true}}
    expect: upper                     # optional: expected = upper|lower|identity of the prompt, when a case has none
    system: ...                       # optional system message for every case
    max_new_tokens: 96
    cases:                            # each: prompt (a user message) or messages; optional id, system, expected
      - prompt: hellow world
    cases_file: more.jsonl            # optional, same fields, one case per line (relative to the battery)
    generate:                         # optional generated cases from a registered source (see evalsuite.probe.sources)
      - {source: synth_text, script: latin, n: 96, seed: 2024, id_prefix: heldout}
    metrics:                          # optional extra metric rows beyond accuracy (see evalsuite.results.aggregate)
      - {name: pass_rate_x100, source: passed, scale: 100}
    rubric: ...                       # optional: what `evalsuite judge` asks its judge to weigh (default: open prompts)
    tools: [{type: function, function: {name, description, parameters}}]  # optional: passed to the template (tools=)

Errors name the file, the line and the field, and a bad battery stops the run before any model is loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.config.limits import MAX_CASES, MAX_MESSAGES, range_problem
from evalsuite.config.yaml_lines import KeyPath, load_yaml
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.scorers import ScoreFn, expected_problem, make_scorer
from evalsuite.probe.sources import generate_cases
from evalsuite.results.aggregate import MetricSpec

EXPECT = {"upper": str.upper, "lower": str.lower, "identity": lambda s: s}
TOP_KEYS = {"name", "description", "scorer", "expect", "system", "max_new_tokens", "cases", "cases_file",
            "generate", "metrics", "rubric", "tools"}
CASE_KEYS = {"id", "prompt", "messages", "system", "expected"}
DEFAULT_MAX_NEW_TOKENS = 64
SLUG_MAX = 40
BUILTIN_ORDER = ("uppercase-echo", "cyrillic", "runaway-turns", "template-leakage", "squad", "llama32-ten")
OPT_IN = ("tool-calls",)  # built-in, but run only when named: most fine-tunes never see a tool


@dataclass(frozen=True)
class Case:
    """One probe: the conversation sent to the model (ending in a user turn) and what the scorer expects."""

    id: str
    messages: tuple[dict[str, str], ...]
    expected: Any = None
    tools: tuple[dict[str, Any], ...] = ()  # the tools the prompt declares (rendered by the template as tools=)

    @property
    def prompt(self) -> str:
        """The last user message: what a reader means by "the prompt"."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


@dataclass
class Battery:
    name: str
    path: Path
    cases: list[Case]
    scorer_name: str
    scorer_args: dict[str, Any]
    scorer: ScoreFn = field(repr=False)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    description: str = ""
    metrics: list[MetricSpec] = field(default_factory=list)
    rubric: str | None = None  # the judge's rubric for this battery (evalsuite judge)


def builtin_dir() -> Path:
    import importlib

    probes = importlib.import_module("evalsuite.probes")
    return Path(str(probes.__file__)).resolve().parent


def slug(text: str, limit: int = SLUG_MAX) -> str:
    """A readable ASCII-ish test id from a prompt: ``hellow world`` -> ``hellow-world``, ``привет`` -> ``privet``."""
    from evalsuite.probe.textchecks import transliterate

    words = re.findall(r"[^\W_]+", transliterate(text).lower())
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > limit:
            break
        out = f"{out}-{w}" if out else w
    return out or (words[0][:limit] if words else "case")


class _Where:
    """``file:line: field`` prefixes for errors, from the YAML's recorded key lines."""

    def __init__(self, path: Path, lines: dict[KeyPath, int]) -> None:
        self.path, self.lines = path, lines

    def __call__(self, keys: KeyPath, message: str) -> EvalsuiteError:
        line = None
        for n in range(len(keys), 0, -1):
            line = self.lines.get(keys[:n])
            if line:
                break
        name = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in keys).replace(".[", "[")
        return EvalsuiteError(f"{self.path}{f':{line}' if line else ''}: {name}: {message}")


def load_battery(path: str | Path, overrides: dict[str, Any] | None = None) -> Battery:
    """Load and validate one battery file. ``overrides`` replace arguments of its ``generate`` sources
    (``{"n": 20, "dataset": "dev.json"}``), for options such as ``--squad-n``."""
    p = Path(path)
    data, lines = load_yaml(p)
    where = _Where(p, lines)
    _check_top_keys(data, where)
    name = _string(data.get("name", p.stem), ("name",), where)
    scorer_name, scorer_args = _scorer_spec(data.get("scorer"), where)
    scorer = make_scorer(scorer_name, scorer_args, where=f"{p}:{lines.get(('scorer',), '?')}: scorer")
    expect, system = _case_defaults(data, where)
    tools = _tools(data, where)
    max_new = _max_new(data, where)
    raw_cases = [*_inline_cases(data, where), *_file_cases(data, where), *_generated_cases(data, where, overrides)]
    if len(raw_cases) > MAX_CASES:
        raise where(("cases",), f"{len(raw_cases):,} cases, more than the {MAX_CASES:,} one battery may hold")
    cases = [_case(c, keys, w, expect, system, tools) for keys, c, w in raw_cases]
    if not cases:
        raise where(("cases",), "the battery has no cases")
    _unique_ids(cases, p)
    battery = Battery(name=name, path=p, cases=cases, scorer_name=scorer_name, scorer_args=scorer_args,
                      scorer=scorer, max_new_tokens=max_new,
                      description=str(data.get("description", "")).strip(), metrics=_metrics(data, where),
                      rubric=_string(data["rubric"], ("rubric",), where) if "rubric" in data else None)
    for case, (keys, _, w) in zip(cases, raw_cases, strict=True):
        _check_expected(case, scorer_name, keys, w)
    return battery


# A case before validation: its key path in the battery, the raw value, and how to name it in errors.
RawCase = tuple[KeyPath, Any, Any]


def _check_top_keys(data: Any, where: _Where) -> None:
    if not isinstance(data, dict):
        raise EvalsuiteError(f"{where.path}: expected a mapping with at least `cases` or `generate`")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise where((unknown[0],), f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")


def _case_defaults(data: dict[str, Any], where: _Where) -> tuple[str | None, str | None]:
    """The battery-wide ``expect`` and ``system``, applied to cases that do not set their own."""
    expect = data.get("expect")
    if expect is not None and expect not in EXPECT:
        raise where(("expect",), f"expected one of {', '.join(EXPECT)}, got {expect!r}")
    system = data.get("system")
    if system is not None:
        system = _string(system, ("system",), where)
    return expect, system


def _tools(data: dict[str, Any], where: _Where) -> tuple[dict[str, Any], ...]:
    """The battery's tool declarations: each a mapping naming its function (OpenAI's ``{type: function, function:
    {name, ...}}`` or a bare ``{name, ...}``)."""
    tools = _list(data.get("tools", []), ("tools",), where)
    for i, tool in enumerate(tools):
        spec = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise where(("tools", i), "expected {type: function, function: {name, description, parameters}}")
    return tuple(tools)


def _inline_cases(data: dict[str, Any], where: _Where) -> list[RawCase]:
    cases_value = data.get("cases", [])
    if not isinstance(cases_value, list):
        raise where(("cases",), "expected a list of cases")
    return [(("cases", i), c, where) for i, c in enumerate(cases_value)]


def _file_cases(data: dict[str, Any], where: _Where) -> list[RawCase]:
    if "cases_file" not in data:
        return []
    return _jsonl_cases(where.path.parent / _string(data["cases_file"], ("cases_file",), where))


def _generated_cases(data: dict[str, Any], where: _Where, overrides: dict[str, Any] | None) -> list[RawCase]:
    out: list[RawCase] = []
    for i, spec in enumerate(_list(data.get("generate", []), ("generate",), where)):
        if not isinstance(spec, dict) or "source" not in spec:
            raise where(("generate", i), "expected a mapping with a `source`")
        args = {k: v for k, v in spec.items() if k != "source"}
        generated = generate_cases(str(spec["source"]), args,
                                   f"{where.path}:{where.lines.get(('generate', i), '?')}: generate", overrides)
        out += [(("generate", i), c, where) for c in generated]
    return out


def _string(value: Any, keys: KeyPath, where: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where(keys, f"expected a non-empty string, got {value!r}")
    return value


def _list(value: Any, keys: KeyPath, where: Any) -> list[Any]:
    if not isinstance(value, list):
        raise where(keys, f"expected a list, got {value!r}")
    return value


def _scorer_spec(value: Any, where: _Where) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str) and value:
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        args = value.get("args") or {}
        extra = set(value) - {"name", "args"}
        if not isinstance(args, dict) or extra:
            raise where(("scorer",), "expected {name: NAME, args: {...}}")
        return value["name"], args
    raise where(("scorer",), "expected a scorer name or {name: NAME, args: {...}}")


def _max_new(data: dict[str, Any], where: _Where) -> int:
    value = data.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise where(("max_new_tokens",), f"expected a positive integer, got {value!r}")
    problem = range_problem("max_new_tokens", value)
    if problem:
        raise where(("max_new_tokens",), problem)
    return value


def _metrics(data: dict[str, Any], where: _Where) -> list[MetricSpec]:
    out = []
    for i, m in enumerate(_list(data.get("metrics", []), ("metrics",), where)):
        try:
            spec = MetricSpec(**m)
        except TypeError as e:
            raise where(("metrics", i), f"expected {{name, source, scale, higher_is_better, method}}: {e}") from None
        if spec.source not in ("passed", "failed", "score") or spec.method not in ("wilson", "bootstrap", "none"):
            raise where(("metrics", i), "source must be passed|failed|score and method wilson|bootstrap|none")
        out.append(spec)
    return out


class _LineWhere:
    def __init__(self, path: Path, line: int) -> None:
        self.path, self.line = path, line

    def __call__(self, keys: KeyPath, message: str) -> EvalsuiteError:
        name = ".".join(str(k) for k in keys if isinstance(k, str)) or "case"
        return EvalsuiteError(f"{self.path}:{self.line}: {name}: {message}")


def _jsonl_cases(path: Path) -> list[RawCase]:
    from evalsuite.config.rows import read_records

    if not path.is_file():
        raise EvalsuiteError(f"{path}: no such cases file")
    return [((), record, _LineWhere(path, row)) for row, record in read_records(path)]


def _check_expected(case: Case, scorer: str, keys: KeyPath, where: Any) -> None:
    """A case whose ``expected`` its scorer cannot read is refused where it is written (after the battery's other
    checks, which name problems that come first in the file)."""
    problem = expected_problem(scorer, case.expected)
    if problem:
        raise where((*keys, "expected"), problem)


def _case(raw: Any, keys: KeyPath, where: Any, expect: str | None, system: str | None,
          tools: tuple[dict[str, Any], ...] = ()) -> Case:
    if isinstance(raw, str):
        raw = {"prompt": raw}
    if not isinstance(raw, dict):
        raise where(keys, f"expected a case mapping or a prompt string, got {raw!r}")
    unknown = sorted(set(raw) - CASE_KEYS)
    if unknown:
        raise where((*keys, unknown[0]), f"unknown case field (known: {', '.join(sorted(CASE_KEYS))})")
    if ("prompt" in raw) == ("messages" in raw):
        raise where(keys, "a case needs exactly one of `prompt` or `messages`")
    if "prompt" in raw:
        if not isinstance(raw["prompt"], str):
            raise where((*keys, "prompt"), f"expected a string, got {raw['prompt']!r}")
        messages = [{"role": "user", "content": raw["prompt"]}]
    else:
        messages = _messages(raw["messages"], (*keys, "messages"), where)
    sys_text = raw.get("system", system)
    if sys_text is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": str(sys_text)})
    if messages[-1]["role"] != "user":
        raise where(keys, "the conversation must end with a user message")
    case_id = raw.get("id") or slug(messages[-1]["content"])
    expected = raw.get("expected")
    if expected is None and expect is not None:
        expected = EXPECT[expect](messages[-1]["content"])
    return Case(id=str(case_id), messages=tuple(messages), expected=expected, tools=tools)


def _messages(value: Any, keys: KeyPath, where: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise where(keys, "expected a non-empty list of {role, content}")
    if len(value) > MAX_MESSAGES:
        raise where(keys, f"{len(value):,} messages, more than the {MAX_MESSAGES:,} allowed in one conversation")
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise where((*keys, i), f"expected {{role, content}} strings, got {m!r}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _unique_ids(cases: list[Case], path: Path) -> None:
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise EvalsuiteError(f"{path}: case id {c.id!r} appears twice (give the cases distinct `id`s)")
        seen.add(c.id)


def resolve_batteries(names: list[str], search: list[Path] | None = None) -> list[Path]:
    """Battery files for ``names`` (a name looked up in ``search`` dirs then the built-ins, or a file path);
    the built-in batteries but the opt-in ones when ``names`` is empty."""
    dirs = [*(search or []), builtin_dir()]
    if not names:
        found = sorted(f for f in builtin_dir().glob("*.yaml") if f.stem not in OPT_IN)
        return sorted(found, key=lambda f: (BUILTIN_ORDER.index(f.stem) if f.stem in BUILTIN_ORDER else 99, f.stem))
    out = []
    for name in names:
        as_path = Path(os.path.expanduser(name))
        if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
            out.append(as_path)
            continue
        hit = next((d / f"{name}{ext}" for d in dirs for ext in (".yaml", ".yml") if (d / f"{name}{ext}").is_file()),
                   None)
        if hit is None:
            known = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.y*ml")})
            raise EvalsuiteError(f"unknown battery {name!r}; known batteries: {', '.join(known)} "
                                 "(or pass a path to a battery .yaml)")
        out.append(hit)
    return out
