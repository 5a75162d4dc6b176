"""The gguf engine: a GGUF file run by llama.cpp (llama-cpp-python, ``pip install 'evalsuite[gguf]'``).

A ``.gguf`` path given to ``evalsuite probe`` or the pytest plugin is a column beside the HF columns
(:mod:`evalsuite.probe.gguf_target`); the runner builds one :class:`GGUFEngine` per GGUF file (its ``base_model``).
Decoding is greedy, one prompt at a time (llama.cpp serves a prompt per slot; the tiny model decodes thousands of
tokens a second this way). The column's codec renders the prompt (the GGUF's embedded template by default), turns it
into the ids llama.cpp's chat path feeds the model, stops on llama.cpp's end-of-generation tokens and on role
headers, and classifies and decodes exactly as for HF columns, so the results are the same schema. The stall guard
watches each prompt (:mod:`evalsuite.probe.guard`): a prompt it stopped comes back ``time_capped``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from evalsuite.gguf.llama import LlamaCpp
from evalsuite.probe.engines import EngineSpec, Job, shard_by_prompt
from evalsuite.probe.generation import Generation, GenerationSettings, Request
from evalsuite.probe.guard import stopped, stuck


class GGUFEngine:
    recorded_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.llama = LlamaCpp(spec.base_model)

    def generate_mixed(self, jobs: Sequence[Job], settings: GenerationSettings) -> list[Generation]:
        self.spec.check(jobs)
        return [self._one(adapter, request, settings) for adapter, request in jobs]

    def generate_shard(self, jobs: Sequence[Job], settings: GenerationSettings, rank: int,
                       world: int) -> dict[int, Generation]:
        return shard_by_prompt(self, jobs, settings, rank, world)

    def _one(self, adapter: str | None, request: Request, settings: GenerationSettings) -> Generation:
        if stuck(settings):  # the engine is stuck: a prompt not started yet is not started
            return stopped(1)[0]
        codec = self.spec.codec(adapter)
        t0 = time.perf_counter()
        out = self.llama.greedy(codec.prompt_ids(request.messages, request.tools), request.max_new_tokens,
                                set(codec.generation_stop_ids), settings.watch())
        kept, reason, produced = codec.finish(out.ids, settings.stop_strings)
        text, raw = codec.decode(kept)
        return Generation(text, reason, produced, time.perf_counter() - t0, raw,
                          time_capped=out.capped and reason == "max-tokens")
