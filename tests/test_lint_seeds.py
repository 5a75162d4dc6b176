"""The seeds' broken fine-tunes, reproduced: each must be flagged by the rule that explains it, and the fixed set-up
must come out clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lint_support import (  # noqa: F401  (fixtures)
    echo_rows,
    fixture,
    fixture_gemma_dir,
    fixture_llama3_dir,
    fixture_phi3_dir,
    rules,
    run,
    template_file,
)

from evalsuite.lint.runner import run_lint
from evalsuite.lint.setup import from_config


def test_april_2024_llama3_template_is_flagged(llama3_dir: Path, tmp_path: Path) -> None:
    report = run(llama3_dir, echo_rows(), tmp_path, template="Meta-Llama-3-8B-Instruct__original-2024-04.jinja")
    found = rules(report)
    assert {"open-turn-at-end", "missing-generation-prompt"} <= set(found)
    assert found["open-turn-at-end"].severity == "error" and found["open-turn-at-end"].count == 3
    assert report.exit_code == 1
    # The example shows why: the header opened after the answer is trained.
    ex = found["open-turn-at-end"].examples[0]
    trained = [i for i, lab in zip(ex["ids"], ex["labels"]) if lab != -100]
    # ... <|eot_id|><|start_header_id|>assistant<|end_header_id|> (the trailing "\n\n" is never trained)
    assert trained[-4:] == [128009, 128006, 78191, 128007]


def test_fixed_llama3_template_is_clean(llama3_dir: Path, tmp_path: Path) -> None:
    report = run(llama3_dir, echo_rows(), tmp_path, template="Meta-Llama-3-8B-Instruct.jinja")
    assert report.findings == [], [(f.rule, f.message) for f in report.findings]
    assert report.exit_code == 0
    # and the labels it promises are the answer plus <|eot_id|>, nothing else
    assert report.stats["trainable_fraction_by_role"]["assistant"] == 1.0
    assert report.stats["trainable_fraction_by_role"]["user"] == 0.0


def squad_rows(n: int = 12) -> list[dict[str, Any]]:
    squad = json.loads(fixture("datasets/squad/dev-v1.1.json").read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = []
    for article in squad["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                rows.append({"question": qa["question"], "context": para["context"][:300],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
                if len(rows) == n:
                    return rows
    return rows


def phi3_squad_config(tmp: Path, tok: Path, **extra: Any) -> Path:
    """The seeds' Phi-3 SQuAD config shape: axolotl custom format, answers trained, pad == eos."""
    data = tmp / "squad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in squad_rows()), encoding="utf-8")
    lines = [f"base_model: {tok}", "sequence_len: 512", "datasets:", f"  - path: {data}", "    type:",
             "      field_instruction: question", "      field_input: context", "      field_output: answers",
             '      format: "<|user|>\\n{instruction} {input}<|end|>\\n<|assistant|>\\n"']
    lines += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    cfg = tmp / "phi3.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def test_phi3_pad_equals_eos_with_pad_masking_collator_never_trains_eos(phi3_dir: Path, tmp_path: Path
                                                                       ) -> None:
    report = run_lint(from_config(phi3_squad_config(tmp_path, phi3_dir, lint_collator="mask-pad-id")))
    found = rules(report)
    assert "eos-not-trained" in found and found["eos-not-trained"].count == 12
    assert "pad_token == '<|endoftext|>'" in found["eos-not-trained"].message
    ex = found["eos-not-trained"].examples[0]
    assert ex["ids"][-1] == 32000 and ex["labels"][-1] == -100  # the appended EOS, masked by the collator
    assert report.exit_code == 1
    # with evalsuite's own (TRL) collator the same data trains the EOS
    clean = run_lint(from_config(phi3_squad_config(tmp_path, phi3_dir)))
    assert "eos-not-trained" not in rules(clean)


def test_gemma_template_with_system_messages_is_a_template_error(gemma_dir: Path, tmp_path: Path
                                                                ) -> None:
    rows = [{"messages": [{"role": "system", "content": "Answer in capitals."}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "HI"}]},
            *echo_rows(("one", "two"))]
    report = run(gemma_dir, rows, tmp_path)
    found = rules(report)
    assert found["template-error"].count == 1
    assert "System role not supported" in found["template-error"].message
    assert report.exit_code == 1
    # the rows the template accepts are still checked, and they are fine
    assert report.stats["rows"] == 2
    # Gemma's tokenizer eos is <eos> while turns end with <end_of_turn>: without the model's generation config a
    # server would not stop; Gemma ships generation_config.json with eos_token_id [1, 107].
    assert "stop-token-not-generated" in rules(run(gemma_dir, echo_rows(("one",)), tmp_path))
    gen = tmp_path / "generation_config.json"
    gen.write_text(json.dumps({"eos_token_id": [1, 107]}), encoding="utf-8")
    clean = run(gemma_dir, echo_rows(("one", "two")), tmp_path, generation_config=str(gen))
    assert clean.findings == [] and clean.exit_code == 0


def test_qa_config_training_on_inputs_reports_per_role_fractions(phi3_dir: Path, tmp_path: Path
                                                                 ) -> None:
    report = run_lint(from_config(phi3_squad_config(tmp_path, phi3_dir, train_on_inputs=True)))
    finding = rules(report)["prompt-trained"]
    assert finding.severity == "info" and "prompt" in finding.message and "completion" in finding.message
    fractions = report.stats["trainable_fraction_by_role"]
    assert 0.9 < fractions["prompt"] <= 1.0 and fractions["completion"] == 1.0
    assert report.exit_code == 0
    masked = run_lint(from_config(phi3_squad_config(tmp_path, phi3_dir)))
    assert masked.stats["trainable_fraction_by_role"]["prompt"] == 0.0
