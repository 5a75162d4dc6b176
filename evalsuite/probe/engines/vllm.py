"""vLLM engine for probing (``evalsuite probe --engine vllm``): the base loaded once, the N adapters served together
(multi-LoRA: ``enable_lora`` and one ``LoRARequest`` per adapter), tensor parallelism passed through.

It implements the same :class:`evalsuite.probe.engines.Engine` protocol as :class:`evalsuite.probe.engines.hf.HFEngine`
(same :class:`Generation` records), so the results schema does not change with the engine. Prompts are rendered and
tokenized by evalsuite's :class:`PromptCodec` and handed to vLLM as token ids, and the generated ids are cut and
classified by the same codec: both engines see the same prompt tokens, decode greedily (temperature 0) and stop on
the same ids, which is what makes their outputs comparable (the check lm-eval users asked for).

Written against vLLM's documented offline API (``vllm.LLM``, ``SamplingParams``, ``vllm.lora.request.LoRARequest``,
``vllm.inputs.TokensPrompt``). Not run in this project's CI: it needs a CUDA GPU and ``pip install
'evalsuite[vllm]'``; ``tests/test_backends_vllm.py`` checks the requests it builds against a fake ``vllm`` module and
compares it with the HF engine where a GPU is present.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json
from evalsuite.probe.engines import EngineSpec, Job, shard_by_prompt
from evalsuite.probe.generation import Generation, GenerationSettings, PromptCodec, Request

INSTALL = "pip install 'evalsuite[vllm]' (needs a CUDA GPU)"
# vLLM sizes its LoRA buffers for a maximum rank taken from a fixed set; adapters of lower rank are padded.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(path: Path) -> int:
    """The largest rank in an adapter (``r`` and any ``rank_pattern`` override)."""
    cfg = read_json(path / "adapter_config.json")
    return max([int(cfg.get("r", 8)), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())])


def max_lora_rank(ranks: Sequence[int]) -> int:
    top = max(ranks, default=8)
    for allowed in VLLM_LORA_RANKS:
        if top <= allowed:
            return allowed
    raise EvalsuiteError(f"adapter rank {top} is above vLLM's largest supported LoRA rank {VLLM_LORA_RANKS[-1]}")


class VLLMEngine:
    """The base of ``spec`` served by vLLM with its adapters as LoRA requests; a job's adapter ``None`` selects the
    plain base. ``spec.options`` may set ``dtype`` and other ``vllm.LLM`` arguments."""

    recorded_options: ClassVar[tuple[str, ...]] = ("tensor_parallel_size",)

    def __init__(self, spec: EngineSpec) -> None:
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise EvalsuiteError(f"--engine vllm: vLLM is not installed: {INSTALL}") from None
        self.spec = spec
        self.adapters = dict(spec.adapters)
        # Ids are 1-based, stable in column order: vLLM caches adapters by id, so one id must mean one adapter.
        self.requests = {name: LoRARequest(lora_name=name, lora_int_id=i + 1, lora_path=str(path))
                         for i, (name, path) in enumerate(self.adapters.items())}
        # bfloat16 by default: the HF engine's dtype on CUDA, so the two engines' greedy outputs are comparable
        # (vLLM's "auto" would pick float16 for a float32 checkpoint).
        kwargs: dict[str, Any] = {"model": spec.base_model, "tensor_parallel_size": spec.tensor_parallel_size,
                                  "seed": spec.seed, "trust_remote_code": spec.trust_remote_code,
                                  "dtype": "bfloat16", **spec.options}
        if self.adapters:
            kwargs.update(enable_lora=True, max_loras=len(self.adapters),
                          max_lora_rank=max_lora_rank([adapter_rank(p) for p in self.adapters.values()]))
        self.llm_kwargs = kwargs
        self.llm = LLM(**kwargs)

    def generate(self, requests: Sequence[Request], adapter: str | None,
                 settings: GenerationSettings) -> list[Generation]:
        return self.generate_mixed([(adapter, r) for r in requests], settings)

    def generate_mixed(self, jobs: Sequence[Job],
                       settings: GenerationSettings) -> list[Generation]:
        """One ``llm.generate`` call for every (column, request): vLLM schedules the batches itself and serves each
        prompt through its own LoRA (``lora_request`` per prompt; ``None`` for the base)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.spec.check(jobs)
        codecs = [self.spec.codec(a) for a, _ in jobs]
        prompts = [TokensPrompt(prompt_token_ids=c.prompt_ids(r.messages, r.tools)) for c, (_, r) in zip(codecs, jobs,
                                                                                                    strict=True)]
        params = [SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=r.max_new_tokens, seed=settings.seed,
                                 stop_token_ids=list(c.generation_stop_ids), skip_special_tokens=False)
                  for c, (_, r) in zip(codecs, jobs, strict=True)]
        loras = [self.requests[a] if a is not None else None for a, _ in jobs]
        t0 = time.perf_counter()
        outputs = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
        latency = (time.perf_counter() - t0) / max(1, len(jobs))
        return [to_generation(out, codec, settings, latency) for out, codec in zip(outputs, codecs, strict=True)]

    def generate_shard(self, jobs: Sequence[Job], settings: GenerationSettings, rank: int,
                       world: int) -> dict[int, Generation]:
        """vLLM batches internally: data-parallel probing gives each process every ``world``-th prompt."""
        return shard_by_prompt(self, jobs, settings, rank, world)


def to_generation(request_output: Any, codec: PromptCodec, settings: GenerationSettings, latency: float) -> Generation:
    """vLLM's completion -> our :class:`Generation`, classified by the codec exactly as the HF engine does. vLLM
    may or may not keep the stop token in ``token_ids``; when it reports a stop and no stop id is there, the id
    (``stop_reason``, or the eos for a stop on the model's own eos) is put back so that the codec sees the same
    sequence the HF engine would."""
    completion = request_output.outputs[0]
    ids = list(completion.token_ids)
    if completion.finish_reason == "stop" and not any(t in codec.generation_stop_ids for t in ids):
        stop = getattr(completion, "stop_reason", None)  # a stop_token_ids hit: its id; the model's eos: None
        eos = codec.tk.token_id(codec.tk.eos_token)
        ids.append(stop if isinstance(stop, int) else eos if eos is not None else codec.stop_ids[0])
    kept, reason, produced = codec.finish(ids, settings.stop_strings)
    text, raw = codec.decode(kept)
    return Generation(text, reason, produced, latency, raw)
