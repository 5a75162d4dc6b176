"""``evalsuite judge``: ask a judge model, through the probe runner, which of two columns answered better.

The judge is a probe column like any other (an HF model folder, a run dir, or whatever an installed engine
loads), so generation goes through the same engine registry, batching and generation cache: each battery's asks
become a battery of their own (``judge:NAME``, one case per case and order), keyed in the cache by the judge's
column and the rendered judge prompt. Re-judging an unchanged pair generates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_text
from evalsuite.judge.pairs import Ask, asks_for, judgement, merge, pair_cases, parse_pair
from evalsuite.judge.prompt import DEFAULT_RUBRIC, parse_verdict
from evalsuite.judge.target import judge_target
from evalsuite.probe.batteries import Battery, Case, load_battery, resolve_batteries
from evalsuite.probe.engines import EngineFactory
from evalsuite.probe.options import ProbeOptions
from evalsuite.probe.runner import ProbePlan, execute
from evalsuite.probe.scorers import CaseLike, Output, Score
from evalsuite.probe.targets import Target
from evalsuite.results.io import load_results, write_results
from evalsuite.results.judgements import Judgement

JUDGE_MAX_NEW_TOKENS = 64  # room for a sentence of reasons and the verdict line


@dataclass
class JudgeRequest:
    results: Path
    judge: Path
    pair: str
    batteries: list[str] = field(default_factory=list)
    rubric_file: Path | None = None
    options: ProbeOptions = field(default_factory=ProbeOptions)


@dataclass
class JudgeRun:
    judgements: list[Judgement]
    generated: int
    cached: int


def run_judge(request: JudgeRequest, engine: EngineFactory | None = None) -> JudgeRun:
    """Judge the pair on each battery both columns ran, write the verdicts into the results file, return them."""
    results = load_results(request.results)
    a, b = parse_pair(request.pair, [x.name for x in results.adapters])
    cases = pair_cases(results, a, b, request.batteries or None)
    target = judge_target(request.judge, request.options.allow_pickle)
    rubrics = {name: _rubric(name, request) for name in cases}
    asks = {name: asks_for(cs, rubrics[name]) for name, cs in cases.items()}
    replies, generated, cached = _ask(target, asks, request.options, engine)
    model = {"path": str(request.judge), "kind": target.kind, "base_model": target.base_model,
             "weights_sha256": target.info.weights_sha256, "engine": request.options.engine}
    fresh = [judgement(cs, replies.get(name, {}), target.name, a, b, rubrics[name], model)
             for name, cs in cases.items()]
    merge(results, fresh)
    write_results(results, request.results)
    return JudgeRun(fresh, generated, cached)


def _rubric(battery: str, request: JudgeRequest) -> str:
    """``--rubric FILE``, else the battery's ``rubric:``, else the default for open prompts."""
    if request.rubric_file is not None:
        text = read_text(request.rubric_file, "rubric", folder="the rubric is a folder; give a text file").strip()
        if not text:
            raise EvalsuiteError(f"{request.rubric_file}: the rubric file is empty")
        return text
    try:
        found = load_battery(resolve_batteries([battery], request.options.battery_dirs)[0])
    except EvalsuiteError:  # a battery whose file is not here (a user's, run elsewhere): the default rubric
        return DEFAULT_RUBRIC
    return found.rubric or DEFAULT_RUBRIC


def _verdict_scorer(case: CaseLike, out: Output) -> Score:
    side = parse_verdict(out.text)
    return Score(side is not None, float(side is not None), {"verdict": side})


def _battery(name: str, asks: list[Ask], max_new: int) -> Battery:
    cases = [Case(f"{a.case}:{a.order}", ({"role": "user", "content": a.prompt},)) for a in asks]
    return Battery(name=f"judge:{name}", path=Path(name), cases=cases, scorer_name="judge_verdict", scorer_args={},
                   scorer=_verdict_scorer, max_new_tokens=max_new)


def _ask(target: Target, asks: dict[str, list[Ask]], options: ProbeOptions,
         engine: EngineFactory | None) -> tuple[dict[str, dict[tuple[str, str], str]], int, int]:
    """The judge's replies: battery -> (case, order) -> the reply (its answer after any reasoning block)."""
    max_new = options.max_new_tokens or JUDGE_MAX_NEW_TOKENS
    batteries = [_battery(name, mine, max_new) for name, mine in asks.items() if mine]
    if not batteries:
        return {}, 0, 0
    run = execute(ProbePlan(options, [target], batteries, {}), engine=engine)
    stopped = run.results.not_run()
    if stopped:  # a verdict from half a reply would be made up: no judgement is written
        raise EvalsuiteError(f"the judge model was not let to finish {len(stopped)} repl(ies), so nothing was "
                             f"written: {stopped[0].not_run_reason}")
    replies: dict[str, dict[tuple[str, str], str]] = {}
    for s in run.results.samples:
        case, _, order = s.case.rpartition(":")
        replies.setdefault(s.battery.removeprefix("judge:"), {})[(case, order)] = s.answer
    return replies, run.generated, run.cached


def summary_lines(fresh: list[Judgement]) -> list[str]:
    from evalsuite.results.judgements import summarise

    lines = []
    for j in fresh:
        s = summarise(j)
        share = (f"{j.a} preferred in {s.a_wins}/{s.decided} decided [{100 * s.share_low:.0f}%, "
                 f"{100 * s.share_high:.0f}%], p={s.p:.3g}" if s.decided else "nothing decided")
        lines.append(f"{j.battery:<17} {j.a} {s.a_wins} · tie {s.ties} · {j.b} {s.b_wins}  ({share}; "
                     f"{s.inconsistent} orders disagreed, {s.unparseable} unparseable, {s.identical} identical)")
    return lines

