"""Synthetic, self-authored results files for the gate/report/results tests.

Run ``python tests/data/results/factory.py`` to regenerate the JSON files next to this script; the
tests also import :func:`make_results` to build variants in memory. Outputs are deterministic: a
case passes for an adapter when its per-case random draw is below the adapter's ``quality``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # run as a script from anywhere

from evalsuite.results.aggregate import compute_metrics  # noqa: E402
from evalsuite.results.io import write_results  # noqa: E402
from evalsuite.results.schema import AdapterInfo, EngineInfo, Results, Sample, ScorerRef  # noqa: E402

TEN = [
    "Explain quantum computing to a 10-year-old.",
    "Write a short poem about artificial intelligence.",
    "What are the main differences between Python and JavaScript?",
    "How does photosynthesis work?",
    "Continue the Fibonacci sequence: 1, 1, 2, 3, 5, 8,",
    "Describe the water cycle in simple terms.",
    "What is the capital of France and what is it famous for?",
    "Explain why the sky is blue.",
    "Write a haiku about programming.",
    "What are three tips for learning a new language?",
]
ECHO = ["hellow world", "how are youuuuu", "djgdlfkjg KDJFG 111 nn",
        "What are the most important things to know about the human body?"]
ECHO += [f"held out {i} <b>text</b> & more" for i in range(16)]


def manifest(name: str, lora_r: int, peak_cuda: float | None, loss0: float,
             base_model: str = "tiny-qwen") -> dict[str, Any]:
    curve = [{"step": s, "loss": round(loss0 * (0.9 ** s) + 0.05, 4)} for s in range(0, 30, 3)]
    return {
        "schema_version": 1, "kind": "evalsuite-run", "base_model": base_model,
        "backend": {"name": "trl", "version": "1.16"},
        "versions": {"torch": "2.13.0", "transformers": "5.23"}, "hashes": {"config": "ab" * 8},
        "git": {"commit": "0" * 40, "dirty": False},
        "device": {"type": "cuda", "name": "Synthetic GPU", "count": 1} if peak_cuda else
                  {"type": "cpu", "name": "x86_64", "count": 1},
        # final_loss as TRL records it: the mean training loss of the run, not the last logged point
        "train": {"global_step": 27, "loss_curve": curve, "runtime_s": 12.5 + lora_r,
                  "final_loss": round(sum(p["loss"] for p in curve) / len(curve), 4),
                  "samples_per_s": 40.0 / lora_r, "step_time_s": 0.0125 * lora_r,
                  "peak_cpu_rss_mb": 900.0 + 10 * lora_r,
                  "peak_cuda_mb": peak_cuda},
        "config": {"adapter": "lora", "lora_r": lora_r, "load_in_4bit": False, "load_in_8bit": False,
                   "optimizer": "adamw_torch", "sequence_len": 256, "micro_batch_size": 2},
        "name": name,
    }


def _sample(battery: str, case: str, adapter: str, prompt: str, output: str, passed: bool,
            score: float, finish: str, expected: Any = None, scorer: str = "exact",
            details: dict[str, Any] | None = None) -> Sample:
    return Sample(battery=battery, case=case, adapter=adapter, prompt=prompt, output=output,
                  expected=expected, finish_reason=finish, tokens=len(output.split()) + 1,
                  latency_s=0.01 * (len(output) % 7 + 1), scorer=ScorerRef(scorer, {}),
                  passed=passed, score=score, details=details or {})


SYSTEM = "Read the following context and concisely answer my question."
WORDS = ["the", "river", "valley", "was", "settled", "early", "by", "farmers", "who", "traded", "grain", "and", "wool",
         "along", "the", "northern", "road"]
SECOND_TURN = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "HI THERE"}]


def squad_prompt(i: int) -> str:
    """Shaped like the real battery's: system prompt, a long context, the question last."""
    context = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(160)).capitalize() + "."
    return f"{SYSTEM} {context} Question {i}: what did the farmers trade?"


def _stop_problems(ok: bool, finish: str) -> list[str]:
    """What the `stops` scorer records for these outputs (see evalsuite.probe.scorers)."""
    if ok:
        return []
    return ["started another role turn instead of stopping" if finish == "new-turn"
            else "did not stop within the token/time budget", "loop: 'HELLO\\nassistant' repeated 2 times"]


def _ten(i: int, prompt: str, adapter: str, ok: bool, quality: float) -> tuple[str, list[str]]:
    """An open answer and the problems the `open_ended` scorer would record for it."""
    if i == 3 and quality < 0.6:  # untrusted model text: must stay inert in every report format
        return ("<script>alert('x')</script> | a | b |\n<img src=x onerror=alert(1)> **bold** [link](http://x)",
                [] if ok else ["did not stop within the token/time budget"])
    if ok:
        answer = {4: " 13, 21.", 6: " Paris."}.get(i, "")
        return f"{adapter} says: a readable answer to <{prompt}>{answer}\nwith a second line.", []
    if i == 0:
        return ("Imagine a" + " quantum computin" * 9,
                ["did not stop within the token/time budget", "loop: ' quantum computin' repeated 9 times"])
    if i == 6:
        return "It is a city in Europe.", ["missing expected answer(s): Paris"]
    return "", ["empty output", "did not stop within the token/time budget"]


def battery_samples(adapter: str, quality: float, seed: int, caps: dict[str, int] | None = None) -> list[Sample]:
    rng = random.Random(seed)
    # a wrong SQuAD answer under a short cap ran into it (the real battery's 32 tokens cut rambling answers)
    squad_miss = "max-tokens" if (caps or {}).get("squad", 64) <= 32 else "eos"
    out: list[Sample] = []
    for i, text in enumerate(ECHO):
        ok = rng.random() < quality
        output = text.upper() if ok else text.upper()[:-2] + "xx"
        out.append(_sample("uppercase-echo", f"echo-{i:02d}", adapter, text, output, ok,
                           1.0 if ok else 1 - 2 / max(len(text), 2), "eos", text.upper()))
    for i in range(20):
        ok = rng.random() < quality
        output = "HELLO" if ok else "HELLO\nassistant\nHELLO\nassistant"
        finish = "eos" if ok else ("new-turn" if i % 2 else "max-tokens")
        details: dict[str, Any] = {"problems": _stop_problems(ok, finish)}
        if i == 1:  # a multi-turn case: the runner records the whole conversation
            details["messages"] = [*SECOND_TURN, {"role": "user", "content": f"say hello {i}"}]
        out.append(_sample("runaway-turns", f"stop-{i:02d}", adapter, f"say hello {i}", output, ok,
                           float(ok), finish, scorer="stops", details=details))
    for i in range(30):
        draw = rng.random()
        ok = draw < quality
        f1 = 1.0 if ok else round(min(draw, 0.99) * 0.8, 3)
        answer = f"answer {i}"
        # SQuAD lists one answer per annotator: the same span several times, sometimes a variant
        out.append(_sample("squad", f"q{i:03d}", adapter, squad_prompt(i), answer if ok else "something else",
                           ok, f1, "eos" if ok else squad_miss, [answer, answer, f"the {answer}"], "squad",
                           {"f1": f1}))
    for i, prompt in enumerate(TEN):
        ok = rng.random() < max(quality, 0.5)
        body, problems = _ten(i, prompt, adapter, ok, quality)
        expected = {4: {"contains": ["13", "21"]}, 6: {"contains": ["Paris"]}}.get(i)
        out.append(_sample("llama32-ten", f"ten-{i:02d}", adapter, prompt, body, ok, float(ok),
                           "eos" if ok else "max-tokens", expected, "open", {"problems": problems}))
    return out


def make_results(adapters: list[tuple[str, str, float]], seed: int = 0, base_model: str = "tiny-qwen",
                 caps: dict[str, int] | None = None) -> Results:
    """``adapters``: (name, kind, quality) triples; the base model uses kind ``"base"``. ``caps``: each battery's
    max_new_tokens, recorded the way the runner does (``engine.max_new_tokens_per_battery``)."""
    infos: list[AdapterInfo] = []
    samples: list[Sample] = []
    for j, (name, kind, quality) in enumerate(adapters):
        rank = 4 * (j + 1) + len(name)  # differs between adapters of different files too
        m = None if kind == "base" else manifest(name, rank, None if j % 2 else 1234.5 + rank, 1.5 + rank / 8,
                                                 base_model)
        infos.append(AdapterInfo(name=name, kind=kind, base_model=base_model,
                                 path=None if kind == "base" else f"runs/{name}",
                                 weights_sha256=None if kind == "base" else f"{j:064x}",
                                 manifest_digest=None if kind == "base" else f"sha256:{j + 1:064x}",
                                 manifest=m))
        samples += battery_samples(name, quality, seed * 1000 + 7, caps)
    return Results(created="2025-01-01T00:00:00+00:00", evalsuite_version="0.1.0",
                   engine=EngineInfo("hf", 0, max([64, *(caps or {}).values()]),
                                     {"do_sample": False, "batch_size": 8,
                                      **({"max_new_tokens_per_battery": caps} if caps else {})}),
                   adapters=infos, samples=samples, metrics=compute_metrics(samples))


# The built-in batteries' max_new_tokens (probes/*.yaml).
REAL_CAPS = {"uppercase-echo": 96, "runaway-turns": 96, "squad": 32, "llama32-ten": 512}


def scenario(folder: Path) -> dict[str, Path]:
    """The reading issue 16 describes, written into ``folder``: a base + adapter file (``demo``), an adapter on the
    same base probed with 16-token caps and no base column of its own (``short``), and a base + adapter on another
    base model (``big``)."""
    files = {
        "demo": make_results([("base", "base", 0.05), ("demo", "adapter", 0.9)], 0, caps=REAL_CAPS),
        "short": make_results([("demo-16", "adapter", 0.6)], 2, caps={b: 16 for b in REAL_CAPS}),
        "big": make_results([("big-base", "base", 0.5), ("big-lora", "adapter", 0.8)], 3, base_model="big-1b",
                            caps=REAL_CAPS),
    }
    out = {}
    for name, results in files.items():
        out[name] = folder / f"{name}.json"
        write_results(results, out[name])
    return out


# name -> (adapters, seed). good_rerun: same quality, other per-case draws (noise, no regression).
FILES: dict[str, tuple[list[tuple[str, str, float]], int]] = {
    "good.json": ([("base", "base", 0.1), ("good", "adapter", 0.95)], 0),
    "bad.json": ([("base", "base", 0.1), ("bad", "adapter", 0.55)], 0),
    "good_rerun.json": ([("base", "base", 0.1), ("good", "adapter", 0.95)], 1),
    "three.json": ([("base", "base", 0.1), ("r4", "adapter", 0.9), ("r8", "adapter", 0.8)], 0),
}

if __name__ == "__main__":
    for filename, (spec, seed) in FILES.items():
        write_results(make_results(spec, seed), HERE / filename)
        print("wrote", HERE / filename)
