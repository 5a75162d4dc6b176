"""Case generators a battery file can name under ``generate:`` (``source: NAME`` plus arguments).

- ``synth_text``: held-out strings from :mod:`evalsuite.fixtures.synth` (seeded, so the same cases every run),
  optionally disjoint from the demo's training prompts so the demo adapter is measured on text it never saw.
- ``squad``: a fixed seeded sample of SQuAD v1.1 questions (the official dev-set JSON, or a hub id when online),
  prompted as the seeds' Phi-3 config formats them, in dataset order (the order the official script sums in).

Each yields raw case mappings (``id``, ``prompt``/``messages``, ``expected``) that :mod:`evalsuite.probe.batteries`
validates like hand-written cases.
"""

from __future__ import annotations

import inspect
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalsuite.config.limits import check_range, loads_json
from evalsuite.errors import EvalsuiteError

PHI3_SYSTEM_PROMPT = "Read the following context and concisely answer my question."
SQUAD_FORMAT = "{system} {context} {question}"  # the seeds' Phi-3 `format`: "<|user|>\n{system} {input} {instruction}"
SQUAD_ENV_PATH = "${EVALSUITE_FIXTURES}/datasets/squad/dev-v1.1.json"


class BatteryUnavailable(EvalsuiteError):
    """The battery is valid but its data is not here (e.g. the SQuAD dev set); callers may skip it."""


def synth_text(n: int, seed: int, script: str = "latin", min_chars: int = 1, max_chars: int = 40,
               changed_by: str | None = "upper", exclude_demo_train: bool = True,
               id_prefix: str = "heldout") -> list[dict[str, Any]]:
    """``n`` distinct generated strings; with ``changed_by: upper`` only strings that uppercasing changes (so an
    echo can never pass), and with ``exclude_demo_train`` none of the demo adapter's training prompts."""
    from evalsuite.fixtures import synth

    rng = random.Random(seed)
    seen = _demo_train_prompts() if exclude_demo_train else set()
    out: list[dict[str, Any]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not generate {n} distinct strings with these settings")
        text = synth.random_text(rng, script, min_chars, max_chars)
        if text in seen or (changed_by == "upper" and text.upper() == text):
            continue
        seen.add(text)
        out.append({"id": f"{id_prefix}-{len(out):02d}", "prompt": text})
    return out


def _demo_train_prompts() -> set[str]:
    from evalsuite.fixtures import synth

    path = synth.DATA_DIR / "uppercase_echo_train.jsonl"
    if not path.is_file():
        return set()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["messages"][0]["content"] for r in rows}


def default_fixtures_dir() -> Path:
    """``$EVALSUITE_FIXTURES``, else ``../shared/fixtures`` next to the source checkout (as the tests do)."""
    env = os.environ.get("EVALSUITE_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "fixtures"  # evalsuite/probe/sources.py


def squad(n: int = 100, seed: int = 0, dataset: str = SQUAD_ENV_PATH, system_prompt: str = PHI3_SYSTEM_PROMPT,
          format: str = SQUAD_FORMAT) -> list[dict[str, Any]]:
    """A seeded sample of ``n`` questions (all when ``n`` is 0), in dataset order; one user message each."""
    rows = _squad_rows(dataset)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n and n < len(rows):
        keep = set(random.Random(seed).sample(range(len(rows)), n))
        rows = [r for i, r in enumerate(rows) if i in keep]
    return [{"id": r["id"], "expected": r["answers"],
             "prompt": format.format(system=system_prompt, context=r["context"], question=r["question"])}
            for r in rows]


def _squad_rows(dataset: str) -> list[dict[str, Any]]:
    expanded = dataset.replace("${EVALSUITE_FIXTURES}", str(default_fixtures_dir()))
    path = Path(os.path.expanduser(expanded))
    if path.is_file():
        return _squad_json(path)
    if not dataset.startswith(("$", ".", "/", "~")) and not path.suffix:
        return _squad_hub(dataset)
    raise BatteryUnavailable(f"SQuAD dev set not found at {path}; set EVALSUITE_FIXTURES, or pass "
                             "--squad-dataset PATH (the official dev-v1.1.json) or a hub id such as rajpurkar/squad")


def _squad_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
        rows = []
        for article in data["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    rows.append({"id": qa["id"], "context": para["context"], "question": qa["question"],
                                 "answers": [a["text"] for a in qa["answers"]]})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise EvalsuiteError(f"{path}: not a SQuAD v1.1 JSON file ({type(e).__name__}: {e})") from None
    return rows


def _squad_hub(name: str) -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        ds = load_dataset(name, split="validation")
    except Exception as e:  # offline, unknown id, ...: one line for the user
        raise EvalsuiteError(f"{name}: cannot load the SQuAD validation split from the hub: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return [{"id": r["id"], "context": r["context"], "question": r["question"], "answers": list(r["answers"]["text"])}
            for r in ds]


SOURCES: dict[str, Callable[..., list[dict[str, Any]]]] = {"synth_text": synth_text, "squad": squad}


def generate_cases(source: str, args: dict[str, Any], where: str,
                   overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a source with the battery's arguments; ``overrides`` (the ``--squad-n``/``--squad-dataset`` options)
    win for the squad source's arguments. Other sources keep their own: ``--squad-n 20`` must not shrink the
    uppercase-echo held-out set, whose ``synth_text`` source also takes an ``n``."""
    if source != "squad":
        overrides = None
    fn = SOURCES.get(source)
    if fn is None:
        raise EvalsuiteError(f"{where}: unknown case source {source!r}; known: {', '.join(sorted(SOURCES))}")
    params = inspect.signature(fn).parameters
    merged = {**args, **{k: v for k, v in (overrides or {}).items() if k in params and v is not None}}
    unknown = sorted(set(merged) - set(params))
    if unknown:
        raise EvalsuiteError(f"{where}: source {source!r} has no argument {unknown[0]!r} "
                             f"(known: {', '.join(params)})")
    for key, value in merged.items():  # `n: 100000000` would generate for hours before anything is probed
        check_range(key, value, f"{where}: {key}")
    try:
        return fn(**merged)
    except (TypeError, ValueError) as e:
        raise EvalsuiteError(f"{where}: source {source!r}: {e}") from None
