"""Datasets and set-ups on which the streaming lint must report exactly what the in-memory lint reported.

``tests/lint_data/stream_golden.json`` holds what the lint said on each case BEFORE it streamed (issue 19: every
row was held in memory then); ``test_lint_stream.py`` lints the same cases in chunks of a few rows, through a tiny
read buffer, and compares. The cases are the real datasets of the fixtures (LLaMA-Factory's alpaca and glaive
tool-call demos, axolotl's ShareGPT conversation, the DPO demo's conversations, SQuAD rows through an axolotl custom
format) and rows built to trip many rules at once, spread so that a rule's rows, a shape's rows and the first rows
shown cross chunk boundaries. Regenerate (only when a rule's output changes on purpose)::

    EVALSUITE_FIXTURES=... python tests/lint_stream_cases.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lint_support import embedding_base

ROOT = Path(__file__).resolve().parent
GOLDEN = ROOT / "lint_data" / "stream_golden.json"
ALPACA = "datasets/alpaca/llamafactory__alpaca_en_demo.json"
GLAIVE = "datasets/sharegpt/llamafactory__glaive_toolcall_en_demo.json"
CONVERSATION = "datasets/sharegpt/axolotl__fixtures_conversation.json"
DPO = "datasets/sharegpt/llamafactory__dpo_en_demo.json"
TOOLS = [{"type": "function", "function": {"name": "shout", "description": "Shout it.",
                                          "parameters": {"type": "object", "properties": {}}}}]


@dataclass
class Built:
    """What one case lints: ``--tokenizer``/``--data`` options, or a config file."""

    tok: Path | None = None
    data: list[Path] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    show: int = 0


def _msgs(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"role": r, "content": c} for r, c in pairs]


def _write(path: Path, rows: list[Any], array: bool = False) -> Path:
    if array:  # pretty-printed like the LLaMA-Factory files: elements start on their own lines
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tricky_row(i: int) -> dict[str, Any]:
    """Row ``i`` of a dataset that trips many rules: each kind comes back every 11 rows, with its own words."""
    w = f"item {i}"
    kind = i % 11
    if kind == 1:
        return {"messages": _msgs(("user", f"say <|im_end|> {w}"), ("assistant", f"OK <|im_start|> {w}"))}
    if kind == 2:
        return {"messages": _msgs(("user", w), ("assistant", f"{w.upper()}<|im_end|>"))}
    if kind == 3:
        return {"messages": _msgs(("user", w), ("assistant", f"A RATHER LONG ANSWER ABOUT {w} " * 4))}
    if kind == 4:
        return {"messages": [{"role": "user", "content": w},
                             {"role": "assistant", "content": w.upper(), "reasoning_content": f"Asked {w}."}]}
    if kind == 5:
        return {"messages": _msgs(("user", w), ("assistant", f"<think>\nAsked {w}.\n</think>\n\n{w.upper()}"))}
    if kind == 6:
        call = {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "shout", "arguments": {"x": w}}}]}
        return {"messages": [{"role": "user", "content": w}, call, {"role": "tool", "content": w.upper()},
                             {"role": "assistant", "content": w.upper()}], "tools": TOOLS}
    if kind == 7:
        return {"messages": _msgs(("user", w), ("assistant", json.dumps({"name": "shout", "arguments": {"x": w}}))),
                "tools": TOOLS}
    if kind == 8:
        return {"messages": _msgs(("system", "Answer in capitals."), ("user", w), ("assistant", w.upper()))}
    if kind == 9:
        return {"messages": [{"role": "user", "content": w}, {"role": "assistant", "content": "no", "weight": 0},
                             {"role": "user", "content": "again"}, {"role": "assistant", "content": "ПРИВЕТ 🙂 " + w}]}
    if kind == 10:
        return {"messages": _msgs(("user", w), ("assistant", ""))}
    return {"messages": _msgs(("user", w), ("assistant", w.upper()))}


def text_row(i: int) -> dict[str, str]:
    if i % 4 == 1:
        return {"prompt": f"Q: capital number {i}?\nA: ", "completion": "Paris"}
    if i % 4 == 2:
        return {"prompt": f"<|begin_of_text|>Q: number {i}?\nA:", "completion": " <|eot_id|> yes"}
    if i % 4 == 3:
        return {"prompt": f"Q: number {i}?\nA:", "completion": " caf\u00e9 \u00a0 ok"}
    return {"prompt": f"Q: capital number {i}?\nA:", "completion": " Paris"}


def squad_rows(fixtures: Path, n: int) -> list[dict[str, Any]]:
    squad = json.loads((fixtures / "datasets" / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = []
    for article in squad["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                rows.append({"question": qa["question"], "context": para["context"][:400],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
                if len(rows) == n:
                    return rows
    return rows


# -- the cases ----------------------------------------------------------------------------------------------------

def _phi3(fx: Path) -> Path:
    return fx / "tokenizers" / "phi3-mini-4k-instruct"


def alpaca_phi3(fx: Path, tmp: Path) -> Built:
    return Built(_phi3(fx), [fx / ALPACA], {"max_length": 384}, show=2)


def alpaca_phi3_mask_pad(fx: Path, tmp: Path) -> Built:
    return Built(_phi3(fx), [fx / ALPACA], {"max_length": 96, "collator": "mask-pad-id", "packing": True})


def glaive_phi3(fx: Path, tmp: Path) -> Built:
    return Built(_phi3(fx), [fx / GLAIVE], {})


def _standin(fx: Path, tmp: Path, template: str) -> Path:
    from evalsuite.fixtures.standins import BY_TEMPLATE, write_tokenizer

    model = BY_TEMPLATE[template]
    out = tmp / "standins" / model.name
    if not (out / "generation_config.json").is_file():
        write_tokenizer(out, fx, model)
    return out


def glaive_qwen25(fx: Path, tmp: Path) -> Built:
    tok = _standin(fx, tmp, "Qwen-Qwen2.5-7B-Instruct.jinja")
    return Built(tok, [fx / GLAIVE], {"generation_config": str(tok / "generation_config.json"), "max_length": 300})


def sharegpt_llama3_old(fx: Path, tmp: Path) -> Built:
    tok = _standin(fx, tmp, "Meta-Llama-3-8B-Instruct__original-2024-04.jinja")
    conversation = json.loads((fx / CONVERSATION).read_text(encoding="utf-8"))  # one object: make it rows
    conversations = _write(tmp / "conversation.json", [conversation] * 9, array=True)
    return Built(tok, [conversations, fx / DPO], {"generation_config": str(tok / "generation_config.json"),
                                                      "max_length": 700})


def squad_config(fx: Path, tmp: Path) -> Built:
    data = _write(tmp / "squad.jsonl", squad_rows(fx, 150))
    lines = [f"base_model: {_phi3(fx)}", "sequence_len: 160", "lint_collator: mask-pad-id", "datasets:",
             f"  - path: {data}", "    type:", "      field_instruction: question", "      field_input: context",
             "      field_output: answers",
             '      format: "<|user|>\\n{instruction} {input}<|end|>\\n<|assistant|>\\n"']
    cfg = tmp / "squad.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Built(config=cfg)


def tricky_tiny(fx: Path, tmp: Path) -> Built:
    from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

    chat = _write(tmp / "tricky.json", [tricky_row(i) for i in range(150)], array=True)
    text = _write(tmp / "text.jsonl", [text_row(i) for i in range(40)])
    base = embedding_base(tmp, 64, (1, 2))
    return Built(_tiny(tmp, tiny_tokenizer_dir()), [chat, text], {"max_length": 40, "collator": "mask-pad-id",
                                                                   "base_model": str(base)}, show=3)


def _tiny(tmp: Path, committed: Path) -> Path:
    import shutil

    out = tmp / "tiny"
    out.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(committed / name, out / name)
    return out


def tricky_no_system(fx: Path, tmp: Path) -> Built:
    from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

    chat = _write(tmp / "tricky.jsonl", [tricky_row(i) for i in range(120)])
    template = ROOT / "lint_data" / "chatml_no_system.jinja"
    return Built(_tiny(tmp, tiny_tokenizer_dir()), [chat], {"chat_template": str(template)})


def tricky_qwen3(fx: Path, tmp: Path) -> Built:
    tok = _standin(fx, tmp, "Qwen-Qwen3-0.6B.jinja")
    rows = [r for i in range(130) for r in [tricky_row(i)]]
    return Built(tok, [_write(tmp / "q3.jsonl", rows)], {"generation_config": str(tok / "generation_config.json"),
                                                          "max_length": 64, "train_on_reasoning": False})


def text_llama3(fx: Path, tmp: Path) -> Built:
    tok = _standin(fx, tmp, "Meta-Llama-3-8B-Instruct.jinja")
    return Built(tok, [_write(tmp / "text.json", [text_row(i) for i in range(90)], array=True)],
                 {"max_length": 12})


def llama3_bos(fx: Path, tmp: Path) -> Built:
    from lint_support import build_llama3

    tok = build_llama3(tmp / "llama3")
    chat = _write(tmp / "chat.jsonl", [tricky_row(i) for i in range(0, 100, 3)])
    text = _write(tmp / "text.json", [text_row(i) for i in range(60)], array=True)
    return Built(tok, [chat, text], {"chat_template": str(ROOT / "lint_data" / "llama3_nobos.jinja")})


def gemma_unicode(fx: Path, tmp: Path) -> Built:
    from lint_support import build_gemma_standin

    rows = [tricky_row(i) for i in range(100)]
    for i in range(0, 100, 7):
        rows[i] = {"messages": _msgs(("user", f"smile {i}"), ("assistant", f"SMILE {i} 🙂"))}
    return Built(build_gemma_standin(tmp / "gemma"), [_write(tmp / "g.jsonl", rows)], {})


def tiny_template(name: str, **options: Any) -> Callable[[Path, Path], Built]:
    def build(fx: Path, tmp: Path) -> Built:
        from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

        chat = _write(tmp / "tricky.jsonl", [tricky_row(i) for i in range(5, 105)])
        return Built(_tiny(tmp, tiny_tokenizer_dir()), [chat],
                     {"chat_template": str(ROOT / "lint_data" / name), **options})

    return build


def realistic(template: str, n: int) -> Callable[[Path, Path], Built]:
    def build(fx: Path, tmp: Path) -> Built:
        from evalsuite.fixtures.chat_rows import realistic_rows
        from evalsuite.fixtures.standins import BY_TEMPLATE

        tok = _standin(fx, tmp, template)
        rows = realistic_rows(fx, BY_TEMPLATE[template], n=n, all_turns=True)
        rows += [tricky_row(i) for i in range(0, 44, 2)]
        return Built(tok, [_write(tmp / "real.jsonl", rows)],
                     {"generation_config": str(tok / "generation_config.json")})

    return build


CASES: dict[str, Callable[[Path, Path], Built]] = {
    "alpaca-phi3": alpaca_phi3,
    "alpaca-phi3-mask-pad": alpaca_phi3_mask_pad,
    "glaive-phi3": glaive_phi3,
    "glaive-qwen25": glaive_qwen25,
    "sharegpt-llama3-2024-04": sharegpt_llama3_old,
    "squad-config": squad_config,
    "tricky-tiny": tricky_tiny,
    "tricky-no-system": tricky_no_system,
    "tricky-qwen3": tricky_qwen3,
    "text-llama3": text_llama3,
    "llama3-bos": llama3_bos,
    "gemma-unicode": gemma_unicode,
    "tags-header": tiny_template("chatml_tags_header.jinja"),
    "tags-content-only": tiny_template("chatml_tags_content_only.jinja", train_on_inputs=True),
    "bad-generation-prompt": tiny_template("chatml_bad_genprompt.jinja", max_length=30),
    "gpt-oss": realistic("openai-gpt-oss-120b.jinja", 40),
    "deepseek-r1": realistic("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", 40),
    "mistral-nemo": realistic("mistralai-Mistral-Nemo-Instruct-2407.jinja", 40),
    "command-r7b": realistic("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", 30),
    "gemma-3": realistic("google-gemma-3-it.jinja", 30),
}


# -- what the lint said, in a form that can be compared ---------------------------------------------------------

# The day the golden was recorded. Templates such as gpt-oss's render today's date (``strftime_now``) into every
# system turn, so the rendered examples, and their hashes, change at midnight unless the clock is pinned.
GOLDEN_DAY = datetime(2026, 11, 29, 12, 0, 0)


class _GoldenClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
        return GOLDEN_DAY if tz is None else GOLDEN_DAY.replace(tzinfo=tz)


def lint_case(name: str, fx: Path, tmp: Path, **run_options: Any) -> Any:
    from unittest import mock

    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_config, from_options

    built = CASES[name](fx, tmp)
    if built.config is not None:
        setup = from_config(built.config)
    else:
        assert built.tok is not None
        setup = from_options(str(built.tok), [str(d) for d in built.data], **built.options)
    with mock.patch("evalsuite.chat.budget_filters.datetime", _GoldenClock):
        return run_lint(setup, show=built.show, **run_options), built


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def digest(report: Any, built: Built, fx: Path, tmp: Path) -> dict[str, Any]:
    """The report as JSON, with paths made relative (``<fixtures>``, ``<tmp>``) and token-level examples hashed."""
    from evalsuite.lint.locations import Locator

    def norm(value: Any) -> Any:
        text = json.dumps(value, ensure_ascii=False).replace(str(fx), "<fixtures>").replace(str(tmp), "<tmp>")
        return json.loads(text)

    out = norm(report.to_json())
    locator = Locator(report, built.config)
    for f, raw in zip(out["findings"], report.findings):
        f["example_rows"] = [ex["row"] for ex in f["examples"]]
        f["examples"] = _sha(f["examples"])
        f["locations"] = norm([[loc.path, loc.line] for loc in locator.of(raw)])
    out["stats"].pop("elapsed_s")
    out["samples"] = [s["row"] for s in out["samples"]] + [_sha(out["samples"])]
    return out


def main(argv: list[str]) -> int:
    import os
    import tempfile

    fx = Path(os.environ.get("EVALSUITE_FIXTURES", ROOT.parent.parent / "shared" / "fixtures"))
    golden = {}
    with tempfile.TemporaryDirectory() as d:
        for name in CASES:
            tmp = Path(d) / name
            tmp.mkdir()
            report, built = lint_case(name, fx, tmp)
            golden[name] = digest(report, built, fx, tmp)
            print(name, sorted(f["rule"] for f in golden[name]["findings"]), file=sys.stderr)
    text = json.dumps(golden, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if "--write" in argv:
        GOLDEN.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
