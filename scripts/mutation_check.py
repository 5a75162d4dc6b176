"""Mutation check for the core behaviours (not run in CI; slow): plant one known bug at a time in a temporary copy of
the working tree and run the tests that should catch it, once with an empty generation cache and once with a warm
one (filled by the unmutated code on the same tests), then print caught / survived per mutation.

    nice -n 10 python scripts/mutation_check.py            # every mutation (tens of minutes on 2 cores)
    python scripts/mutation_check.py --only new-turn-as-eos --only squad-articles-first
    python scripts/mutation_check.py --list

The working tree is never modified. The copy imports its own code (``PYTHONPATH`` points at it; the editable
install's finder comes after it) and trains the test adapters it needs once into its own folder (run dirs record the
copy's base path, so the user's cached adapters cannot serve it; a mutated trainer trains under its own key). A
mutation
whose ``old`` text is no longer in its file is reported as ``stale``: update it with the code. A baseline that fails
on the unmutated copy makes that mutation's result meaningless and is reported as such.

Run it before resolving an issue that touches lint rules, finish reasons, the cache key, statistics, resume, the
judge, report verdicts, gates, export, drift, the GGUF reader, the plugin's user tests, column kinds, tool calls or
reasoning masks, and give its table in the note. Most mutations name one small test file of hand-made artifacts and
run without the third-party fixtures, so ``--only NAME`` takes seconds to a minute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 1800


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str  # exact text, must occur once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the repo root
    without_fixtures: bool = False  # run with EVALSUITE_FIXTURES pointing nowhere: the catch must not need them


TRAIN_RAN = "tests/test_train_ran.py"
RESUME = "tests/test_train.py::test_resume_after_sigkill_continues_from_the_checkpoint_and_matches_an_uninterrupted_run"
NEW_TURN_REAL = "tests/test_probe_runner.py::test_demo_adapter_stops_and_the_broken_terminator_runs_into_new_turns"
CACHE_REAL = "tests/test_probe_runner.py::test_cache_serves_unchanged_adapter_and_regenerates_a_changed_one"
LINT = ("tests/test_lint_severity.py", "tests/test_lint_rules.py", "tests/test_lint_cli.py")
LINT_MODERN = ("tests/test_lint_modern.py", "tests/test_lint_rules.py")
STATS = ("tests/test_stats.py", "tests/test_stats_known_values.py")
JUDGE = "tests/test_judge_hand.py"
JUDGE_REPORT = (f"{JUDGE}::test_html_verdicts_name_the_winning_column",
                f"{JUDGE}::test_markdown_verdicts_name_the_winning_column")
BOUNDS = "tests/test_verdict_boundaries.py"
ARTIFACTS = "tests/test_export_drift_artifacts.py"
MODERN = "tests/test_modern_rows_hand.py"
KINDS = "tests/test_probe_kinds_hand.py"
USER_RECORDED = "tests/test_plugin_user.py::test_only_tests_that_chatted_and_ran_to_a_verdict_are_recorded"

MUTATIONS = [
    # -- the planted bugs --------------------------------------------------------------------------------
    Mutation("resume-ignores-checkpoint", "trainers/trl_backend.py",
             "trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)",
             "trainer.train(resume_from_checkpoint=None)", (RESUME,)),
    Mutation("optimizer-forced-adamw-torch", "trainers/trl_backend.py",
             "optim=config.optimizer,", 'optim="adamw_torch",', (TRAIN_RAN,)),
    Mutation("run-dir-stops-drop-end-of-turn", "trainers/common.py",
             "for token in (eot, hf_tok.eos_token):", "for token in (hf_tok.eos_token,):",
             ("tests/test_run_dir_stops.py",), without_fixtures=True),
    Mutation("new-turn-as-eos", "evalsuite/probe/generation.py",
             'return list(ids[:i]), "new-turn", i + 1', 'return list(ids[:i]), "eos", i + 1', (NEW_TURN_REAL,)),
    Mutation("new-turn-as-max-tokens", "evalsuite/probe/generation.py",
             'return list(ids[:i]), "new-turn", i + 1', 'return list(ids[:i]), "max-tokens", i + 1',
             (NEW_TURN_REAL,)),
    Mutation("squad-articles-before-punctuation", "evalsuite/metrics/squad_v11/squad_scoring.py",
             '    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)\n'
             '    no_articles = _ARTICLES.sub(" ", no_punct)\n',
             '    no_punct = _ARTICLES.sub(" ", lowered)\n'
             '    no_articles = "".join(ch for ch in no_punct if ch not in _PUNCTUATION)\n',
             ("tests/test_squad_normalise.py", "tests/test_squad.py"), without_fixtures=True),
    Mutation("squad-articles-before-lowercase", "evalsuite/metrics/squad_v11/squad_scoring.py",
             "    lowered = text.lower()\n", '    lowered = _ARTICLES.sub(" ", text).lower()\n',
             ("tests/test_squad_normalise.py", "tests/test_squad.py"), without_fixtures=True),
    Mutation("eos-not-trained-warning-in-registry", "evalsuite/lint/findings.py",
             'Rule("eos-not-trained", "error",', 'Rule("eos-not-trained", "warning",', LINT, without_fixtures=True),
    Mutation("eos-not-trained-warning-where-emitted", "evalsuite/lint/row_rules.py",
             'out.append(_f("eos-not-trained", f"{rows.count} of {rp.rows} rows: {why}", rows))',
             'out.append(_f("eos-not-trained", f"{rows.count} of {rp.rows} rows: {why}", rows, "warning"))', LINT,
             without_fixtures=True),
    # -- training options --------------------------------------------------------------------------------------
    Mutation("no-double-quant", "trainers/trl_backend.py",
             "bnb_4bit_use_double_quant=bool(config.bnb_4bit_use_double_quant),",
             "bnb_4bit_use_double_quant=False,", (TRAIN_RAN,)),
    Mutation("gradient-checkpointing-off", "trainers/trl_backend.py",
             "gradient_checkpointing=bool(config.gradient_checkpointing),\n        seed",
             "gradient_checkpointing=False,\n        seed", (TRAIN_RAN,)),
    Mutation("packing-wrapped", "trainers/trl_backend.py",
             'packing_strategy="bfd",', 'packing_strategy="wrapped",', (TRAIN_RAN,)),
    # -- resume --------------------------------------------------------------------------------------------------
    Mutation("resume-restarts-the-data", "trainers/trl_backend.py",
             'report_to="none",', 'report_to="none", ignore_data_skip=True,', (RESUME,)),
    # -- lint rules ----------------------------------------------------------------------------------------------
    Mutation("lint-pad-mask-ignored", "evalsuite/lint/rows.py",
             "            if tid == self.pad_id:\n", "            if False and tid == self.pad_id:\n", LINT,
             without_fixtures=True),
    Mutation("lint-open-turn-needs-two-turns", "evalsuite/lint/template_rules.py",
             'if n < 2 or s.key.turns[-1].role != "assistant"', 'if n < 3 or s.key.turns[-1].role != "assistant"',
             LINT, without_fixtures=True),
    Mutation("lint-packing-flags-trl-too", "evalsuite/lint/model_rules.py",
             'if not setup.packing or setup.collator == "trl":', "if not setup.packing:", LINT,
             without_fixtures=True),
    Mutation("lint-stop-ids-ignore-generation-config", "evalsuite/lint/terminators.py",
             "any(i in self.server_stops for i in trained)",
             "any(i == self.tk.token_id(self.tk.eos_token) for i in trained)", LINT),
    Mutation("lint-terminator-is-its-first-token", "evalsuite/lint/terminators.py",
             "        return tuple(reversed(run))", "        return tuple(reversed(run))[:1]", LINT_MODERN),
    Mutation("lint-reasoning-stripping-unseen", "evalsuite/lint/turns.py",
             "    if _reasoning(acc, msgs, text):", "    if False and _reasoning(acc, msgs, text):", LINT_MODERN),
    # -- finish reasons ------------------------------------------------------------------------------------------
    Mutation("eos-keeps-the-terminator", "evalsuite/probe/generation.py",
             'return list(ids[:i]), "eos", i + 1', 'return list(ids[:i + 1]), "eos", i + 1',
             ("tests/test_probe_codec.py",)),
    Mutation("stop-string-as-max-tokens", "evalsuite/probe/generation.py",
             'return kept[:n], "stop-string", len(kept)', 'return kept[:n], "max-tokens", len(kept)',
             ("tests/test_probe_codec.py",)),
    # -- the generation cache key --------------------------------------------------------------------------------
    Mutation("cache-key-ignores-code", "evalsuite/probe/cache.py",
             '"code": code or generation_code_digest(), ', "", ("tests/test_gencache.py",)),
    Mutation("cache-digest-skips-generate", "evalsuite/probe/cache.py",
             '"evalsuite.chat.encode", "evalsuite.probe.targets", "evalsuite.probe.generation",',
             '"evalsuite.chat.encode", "evalsuite.probe.targets",', ("tests/test_gencache.py",)),
    Mutation("cache-key-ignores-max-new-tokens", "evalsuite/probe/cache.py",
             "return sha256_json([prompt_text, max_new_tokens, list(stop_strings)])",
             "return sha256_json([prompt_text, list(stop_strings)])", (CACHE_REAL,)),
    Mutation("cache-key-ignores-weights", "evalsuite/probe/targets.py",
             '"weights": sha256_file(weights), "adapter_config"', '"weights": str(weights), "adapter_config"',
             (CACHE_REAL,)),
    # -- statistics ----------------------------------------------------------------------------------------------
    Mutation("bootstrap-ci-at-90", "evalsuite/results/stats.py",
             "low, high = np.quantile(means, [alpha, 1.0 - alpha])",
             "low, high = np.quantile(means, [2 * alpha, 1.0 - 2 * alpha])", STATS),
    Mutation("mcnemar-counts-only-the-larger", "evalsuite/results/stats.py",
             "return binomial_two_sided_p(min(pass_to_fail, fail_to_pass), pass_to_fail + fail_to_pass)",
             "return binomial_two_sided_p(min(pass_to_fail, fail_to_pass), max(pass_to_fail, fail_to_pass))",
             STATS),
    Mutation("paired-bootstrap-one-sided", "evalsuite/results/stats.py",
             "np.count_nonzero(np.abs(means) >= abs(observed) - 1e-12)",
             "np.count_nonzero(means * np.sign(observed) >= abs(observed) - 1e-12)", STATS),
    Mutation("wilson-centre-is-p", "evalsuite/results/stats.py",
             "centre = (p + z2n / 2.0) / (1.0 + z2n)", "centre = p", STATS),
    # -- the judge and its report part -------------------------------------------------------------------------
    Mutation("judge-one-order-tie-counts-as-a-win", "evalsuite/judge/prompt.py",
             '    if len(set(parsed)) == 1:\n        return str(parsed[0]), "agree"\n',
             '    if len(set(parsed) - {"tie"}) <= 1:\n'
             '        return next((str(p) for p in parsed if p != "tie"), "tie"), "agree"\n',
             (f"{JUDGE}::test_two_orders_decide_only_when_they_agree",), without_fixtures=True),
    Mutation("judge-order-ignored", "evalsuite/judge/prompt.py",
             'if position is None or order == "ab" or position == "tie":',
             'if position is None or order in ORDERS or position == "tie":',
             (JUDGE, "tests/test_judge_verdicts.py::test_the_two_orders_make_one_verdict"), without_fixtures=True),
    Mutation("judge-reads-the-raw-output", "evalsuite/judge/pairs.py",
             "tuple(s.turns), s.answer, theirs[s.case].answer)", "tuple(s.turns), s.output, theirs[s.case].output)",
             (f"{JUDGE}::test_the_judge_sees_the_answer_after_the_reasoning",), without_fixtures=True),
    Mutation("judge-case-id-split-at-the-first-colon", "evalsuite/judge/run.py",
             'case, _, order = s.case.rpartition(":")', 'case, _, order = s.case.partition(":")',
             (f"{JUDGE}::test_case_ids_with_colons_get_their_own_verdicts",), without_fixtures=True),
    Mutation("judge-asks-about-identical-answers", "evalsuite/judge/pairs.py",
             "        if c.identical:\n            continue\n        for order in ORDERS:",
             "        for order in ORDERS:", (f"{JUDGE}::test_the_judge_sees_the_answer_after_the_reasoning",),
             without_fixtures=True),
    Mutation("judge-report-winners-swapped", "evalsuite/report/judged.py",
             '{"a": a, "b": b}.get(v.verdict, "tie")', '{"a": b, "b": a}.get(v.verdict, "tie")', JUDGE_REPORT,
             without_fixtures=True),
    # -- report verdicts and gates at their boundaries ---------------------------------------------------------
    Mutation("report-verdict-without-significance", "evalsuite/report/compare.py",
             "if self.significant and self.direction:", "if self.direction:", (BOUNDS,), without_fixtures=True),
    Mutation("report-significant-at-p-equal-alpha", "evalsuite/report/compare.py",
             "cmp.p_value < alpha, direction", "cmp.p_value <= alpha, direction", (BOUNDS,), without_fixtures=True),
    Mutation("report-direction-ignores-lower-is-better", "evalsuite/report/compare.py",
             '("better" if (value > 0) == spec.higher_is_better else "worse")',
             '("better" if value > 0 else "worse")', (BOUNDS,), without_fixtures=True),
    Mutation("report-control-from-another-file", "evalsuite/report/columns.py",
             "first = (own or bases or group.columns)[0]", "first = (bases or group.columns)[0]", (BOUNDS,),
             without_fixtures=True),
    Mutation("gate-greater-as-greater-or-equal", "evalsuite/gates/expr.py",
             '">": left > right', '">": left >= right', (BOUNDS,), without_fixtures=True),
    Mutation("gate-less-as-less-or-equal", "evalsuite/gates/expr.py",
             '"<": left < right', '"<": left <= right', (BOUNDS,), without_fixtures=True),
    Mutation("gate-significant-at-p-equal-alpha", "evalsuite/gates/evaluate.py",
             "significant = p < alpha", "significant = p <= alpha", (BOUNDS,), without_fixtures=True),
    Mutation("gate-tolerance-reached-is-beyond", "evalsuite/gates/evaluate.py",
             "beyond = worsening > allowed + 1e-12", "beyond = worsening >= allowed - 1e-12", (BOUNDS,),
             without_fixtures=True),
    Mutation("gate-worsening-ignores-lower-is-better", "evalsuite/gates/evaluate.py",
             "worsening = (b_value - c_value) if spec.higher_is_better else (c_value - b_value)",
             "worsening = b_value - c_value", (BOUNDS,), without_fixtures=True),
    # -- export, drift and the GGUF reader ---------------------------------------------------------------------
    Mutation("export-keeps-a-stale-template", "evalsuite/export/merge.py",
             'if isinstance(config, dict) and "chat_template" in config:',
             'if isinstance(config, dict) and "chat_template" in config and False:', (ARTIFACTS,),
             without_fixtures=True),
    Mutation("export-keeps-chat-template-json", "evalsuite/export/merge.py",
             '    (out / "chat_template.json").unlink(missing_ok=True)\n', "", (ARTIFACTS,), without_fixtures=True),
    Mutation("export-base-generation-config-wins", "evalsuite/export/merge.py",
             "gen = path / GENERATION_CONFIG if (path / GENERATION_CONFIG).is_file() else "
             "Path(base) / GENERATION_CONFIG",
             "gen = Path(base) / GENERATION_CONFIG if (Path(base) / GENERATION_CONFIG).is_file() else "
             "path / GENERATION_CONFIG", (ARTIFACTS,), without_fixtures=True),
    Mutation("drift-agreement-ignores-finish-reasons", "evalsuite/drift/dynamic.py",
             "a.output == b.output and a.finish_reason == b.finish_reason", "a.output == b.output", (ARTIFACTS,),
             without_fixtures=True),
    Mutation("drift-flips-error-at-p-equal-alpha", "evalsuite/drift/dynamic.py",
             'severity = "error" if p < alpha and not moved', 'severity = "error" if p <= alpha and not moved',
             (ARTIFACTS,), without_fixtures=True),
    Mutation("gguf-bad-utf8-dropped", "evalsuite/gguf/reader.py",
             'raw.decode("utf-8", errors="replace")', 'raw.decode("utf-8", errors="ignore")', (ARTIFACTS,),
             without_fixtures=True),
    Mutation("gguf-eot-not-a-declared-end-of-turn", "evalsuite/drift/static.py",
             'declared = {gg.file.token_id("eos"), gg.file.token_id("eot"),', 'declared = {gg.file.token_id("eos"),',
             (ARTIFACTS,), without_fixtures=True),
    # -- the plugin's user tests and column kinds --------------------------------------------------------------
    Mutation("user-test-skip-recorded-as-failure", "evalsuite/pytest_plugin.py",
             ' or report.outcome == "skipped":', ":", (USER_RECORDED,), without_fixtures=True),
    Mutation("user-test-filed-under-the-previous-reply", "evalsuite/pytest_plugin.py",
             "replies = model.history[item.stash.get(REPLIES_FROM, len(model.history)):]",
             "replies = model.history[-1:]", (USER_RECORDED,), without_fixtures=True),
    Mutation("user-test-case-keeps-the-column", "evalsuite/probe/usertests.py",
             "    if parts == column:\n        return head\n", "", (USER_RECORDED,), without_fixtures=True),
    Mutation("checkpoint-full-fine-tune-as-adapter", "evalsuite/probe/kinds.py",
             'kind="checkpoint" if found.kind == "peft" else found.kind', 'kind="checkpoint"', (KINDS,),
             without_fixtures=True),
    Mutation("checkpoint-full-fine-tune-has-no-weights", "evalsuite/probe/kinds.py",
             ' and not (ckpt / "config.json").exists():', ":", (KINDS,), without_fixtures=True),
    # -- tool calls, reasoning masks and stop ids --------------------------------------------------------------
    Mutation("toolcall-without-arguments-refused", "evalsuite/probe/toolcalls.py",
             "    if args is None:\n        args = {}\n", "", (MODERN,), without_fixtures=True),
    Mutation("lint-call-without-arguments-is-a-call", "evalsuite/lint/turns.py",
             'and "arguments" in c for c in calls', "for c in calls", (MODERN,), without_fixtures=True),
    Mutation("lint-written-empty-block-counted-as-injected", "evalsuite/lint/turns.py",
             "extra = rendered - written", "extra = rendered", (MODERN,), without_fixtures=True),
    Mutation("reasoning-of-a-weight-zero-turn-trained", "evalsuite/chat/encode.py",
             "out_t.append(trained[j] and train_on_reasoning)", "out_t.append(train_on_reasoning)", (MODERN,),
             without_fixtures=True),
    Mutation("lint-generation-eos-replaces-the-tokenizer-s", "evalsuite/lint/setup.py",
             "setup.stop_ids |= read_stop_ids(gen_config)", "setup.stop_ids = read_stop_ids(gen_config)", (MODERN,),
             without_fixtures=True),
    # issue 28 (session 8): the CPU's native bf16 decides bf16: auto; the open prompts' budget fits real answers
    Mutation("cpu-bf16-auto-always-on", "trainers/common.py",
             "bf16 = bool(torch.cuda.is_bf16_supported()) if on_cuda else cpu_has_native_bf16()",
             "bf16 = bool(torch.cuda.is_bf16_supported()) if on_cuda else True",
             ("tests/test_train.py::test_cpu_mixed_precision_follows_native_bf16",), without_fixtures=True),
    Mutation("open-prompts-budget-back-to-160", "probes/llama32-ten.yaml",
             "max_new_tokens: 512\n", "max_new_tokens: 160\n",
             ("tests/test_open_answers.py::test_real_answers_that_end_on_their_own_fit_the_budget_and_pass",),
             without_fixtures=True),
]


@dataclass
class Outcome:
    status: str  # caught, survived, error (collection/usage), stale, baseline-failed
    seconds: float
    summary: str


def copy_tree(dest: Path) -> None:
    """The working tree as it is (tracked and untracked-but-not-ignored files), importable on its own."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # Sub-packages that live outside evalsuite/ (pyproject's package-dir) become links, so plain sys.path imports
    # of evalsuite.* resolve inside the copy instead of through the editable install.
    package_dir = tomllib.loads((dest / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for name, folder in package_dir.items():
        link = dest / name.replace(".", "/")
        if name != "evalsuite" and Path(folder) != Path(name.replace(".", "/")) and not link.exists():
            link.symlink_to(dest / folder, target_is_directory=True)


def environment(copy: Path, cache: Path, keep_cache: bool, without_fixtures: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "EVALSUITE_CACHE": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("EVALSUITE_TESTS_KEEP_CACHE", None)
    if keep_cache:
        env["EVALSUITE_TESTS_KEEP_CACHE"] = "1"
    if without_fixtures:
        env["EVALSUITE_FIXTURES"] = str(copy / "no-fixtures-here")
    else:
        env.setdefault("EVALSUITE_FIXTURES", str(ROOT.parent / "shared" / "fixtures"))
    return env


def cache_dir(parent: Path, name: str, adapters: Path, warm_from: Path | None = None) -> Path:
    """An EVALSUITE_CACHE folder: its own generations (empty, or a copy of a warm one) and the check's adapters."""
    d = parent / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    adapters.mkdir(parents=True, exist_ok=True)
    (d / "test-adapters").symlink_to(adapters, target_is_directory=True)
    if warm_from is not None and (warm_from / "generations").is_dir():
        shutil.copytree(warm_from / "generations", d / "generations")
    return d


def pytest_run(copy: Path, tests: Sequence[str], env: dict[str, str]) -> tuple[int, float, str]:
    start = time.time()
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        rc, out = -1, f"timed out after {RUN_TIMEOUT}s"
    lines = [line for line in out.strip().splitlines() if line.strip()]
    return rc, time.time() - start, lines[-1] if lines else ""


def status_of(rc: int) -> str:
    return {0: "survived", 1: "caught", -1: "timeout", 5: "no tests"}.get(rc, "error")


def check_imports(copy: Path, env: dict[str, str]) -> None:
    probe = ("import evalsuite.probe.generation as g, evalsuite.trainers.common as c, evalsuite.metrics.squad_v11 as s;"
             "print(g.__file__); print(c.__file__); print(s.__file__)")
    files = subprocess.run([sys.executable, "-c", probe], cwd=copy, env=env, check=True, capture_output=True,
                           text=True).stdout.split()
    outside = [f for f in files if not Path(f).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise SystemExit(f"mutation check: the copy imports code from outside itself: {outside}")


def run(mutations: Sequence[Mutation], work: Path) -> dict[str, tuple[Outcome, Outcome]]:
    copy, adapters = work / "tree", work / "test-adapters"
    copy_tree(copy)
    check_imports(copy, environment(copy, work, False, False))
    baselines: dict[tuple[tuple[str, ...], bool], tuple[Path, int, str]] = {}
    results: dict[str, tuple[Outcome, Outcome]] = {}
    for m in mutations:
        target = copy / m.file
        text = target.read_text(encoding="utf-8")
        if text.count(m.old) != 1:
            stale = Outcome("stale", 0.0, f"'old' occurs {text.count(m.old)} times in {m.file}")
            results[m.name] = (stale, stale)
            print(f"{m.name}: stale", flush=True)
            continue
        key = (m.tests, m.without_fixtures)
        if key not in baselines:  # the unmutated code on the same tests: must pass, and fills the warm cache
            warm = cache_dir(work / "warm", str(len(baselines)), adapters)
            rc, secs, summary = pytest_run(copy, m.tests, environment(copy, warm, True, m.without_fixtures))
            baselines[key] = (warm, rc, summary)
            print(f"baseline {' '.join(m.tests)}: rc {rc} in {secs:.0f}s ({summary})", flush=True)
        warm, base_rc, base_summary = baselines[key]
        if base_rc != 0:
            failed = Outcome("baseline-failed", 0.0, base_summary)
            results[m.name] = (failed, failed)
            continue
        try:
            target.write_text(text.replace(m.old, m.new), encoding="utf-8")
            outcomes = []
            for mode in ("empty", "warm"):
                cache = cache_dir(work, f"run-{mode}", adapters, warm if mode == "warm" else None)
                # empty: the test session's own fresh cache (the default); warm: the baseline's cache, kept
                rc, secs, summary = pytest_run(copy, m.tests, environment(copy, cache, mode == "warm",
                                                                          m.without_fixtures))
                outcomes.append(Outcome(status_of(rc), secs, summary))
                print(f"{m.name} [{mode}]: {status_of(rc)} in {secs:.0f}s ({summary})", flush=True)
            results[m.name] = (outcomes[0], outcomes[1])
        finally:
            target.write_text(text, encoding="utf-8")
    return results


def table(mutations: Sequence[Mutation], results: dict[str, tuple[Outcome, Outcome]]) -> str:
    rows = ["| mutation | file | tests | fixtures | empty cache | warm cache |", "|---|---|---|---|---|---|"]
    for m in mutations:
        if m.name not in results:
            continue
        empty, warm = results[m.name]
        tests = ", ".join(t.replace("tests/", "").split("::")[-1] for t in m.tests)
        rows.append(f"| {m.name} | {m.file} | {tests} | {'absent' if m.without_fixtures else 'present'} | "
                    f"{empty.status} ({empty.seconds:.0f}s) | {warm.status} ({warm.seconds:.0f}s) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:40} {m.file}")
        return 0
    unknown = set(args.only) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    work = Path(tempfile.mkdtemp(prefix="evalsuite-mutation-"))
    print(f"mutation check: {len(chosen)} mutation(s) in {work}", flush=True)
    try:
        results = run(chosen, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(chosen, results))
    missed = [name for name, (e, w) in results.items() if e.status != "caught" or w.status != "caught"]
    print(f"\n{len(results) - len(missed)} of {len(results)} caught with both caches" +
          (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
