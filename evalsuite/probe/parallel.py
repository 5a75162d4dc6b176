"""Data-parallel probing: ``evalsuite probe --num-processes N`` re-launches itself under ``accelerate launch``; each
process loads the base and the adapters, generates its share, and the generations are gathered so that every
process holds them all. Only rank 0 writes the generation cache and the one results file.

What is sharded is the engine's batch plan, not single prompts: batch k runs in process k mod N, and a batch is
built exactly as a single process would build it (same prompts, same padding), so greedy outputs do not depend on
the process count (given the same kernels and thread count; on CPU, ``OMP_NUM_THREADS`` can change float
reductions). An engine without a batch plan (vLLM, which batches internally) shards prompt by prompt
(:func:`evalsuite.probe.engines.shard_by_prompt`).

Nothing heavy is imported at module level; torch.distributed is only touched when WORLD_SIZE > 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalsuite import launch
from evalsuite.probe.engines import Engine, Job
from evalsuite.probe.generation import Generation, GenerationSettings


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when not launched."""
    return launch.rank(), launch.world_size()


def is_main() -> bool:
    return launch.is_main_process()


def default_device() -> str:
    """One GPU per process under a launcher (cuda:LOCAL_RANK), else cuda when present, else cpu."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{launch.local_rank()}" if launch.world_size() > 1 else "cuda"


def _ensure_group() -> Any:
    """The default process group, created by accelerate from torchrun's environment (gloo on CPU)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())
    return dist


def generate(engine: Engine, jobs: Sequence[Job], settings: GenerationSettings) -> list[Generation]:
    """``engine.generate_mixed(jobs, settings)``, spread over the launched processes (each runs its
    ``engine.generate_shard``); every process returns the full list, in the order of ``jobs``."""
    rank, size = world()
    if size == 1:
        return list(engine.generate_mixed(jobs, settings))
    local = engine.generate_shard(jobs, settings, rank, size)
    dist = _ensure_group()
    gathered: list[dict[int, Generation] | None] = [None] * size
    dist.all_gather_object(gathered, local)
    merged: dict[int, Generation] = {}
    for part in gathered:
        merged.update(part or {})
    missing = [i for i in range(len(jobs)) if i not in merged]
    if missing:
        raise RuntimeError(f"data-parallel probing lost {len(missing)} generation(s) (first index {missing[0]})")
    return [merged[i] for i in range(len(jobs))]


def barrier() -> None:
    """Wait for every process (no-op when not launched): rank 0 writes files the others must not race."""
    if world()[1] > 1:
        _ensure_group().barrier()
