"""The hf engine: transformers + peft.

:class:`HFEngine` loads the base once, attaches N LoRA adapters (peft multi-adapter) and decodes greedily in batches:
one column per batch on CPU, where a step costs about its rows; on GPU short columns share a batch, each row naming
its adapter (``__base__`` for the plain base). Either way one base copy serves every adapter and the base, so N
adapters in one session pay one start-up. Prompts are sorted by length and left-padded with an attention mask;
decoding (:mod:`evalsuite.probe.engines.decode`) uses the KV cache, drops rows as they stop, and stops a stalled
batch (:mod:`evalsuite.probe.guard`). Batch sizes come from the memory plan (:mod:`evalsuite.probe.memplan`) unless
fixed, and a batch that runs out of memory is split and run again. On CPU a batch of one adapter runs on merged
copies of its LoRA weights (:mod:`evalsuite.probe.engines.merged`), linear weights are stored column-major (the
faster matmul) and decode steps attend through two matmuls (:mod:`evalsuite.probe.engines.attention`); a column's
batches, cut to nearly equal sizes, are decoded two at a time when the model is large enough
(:mod:`evalsuite.probe.engines.workers`).
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.engines import EngineSpec, Job
from evalsuite.probe.engines.attention import use_decode_attention
from evalsuite.probe.engines.decode import greedy_decode, watch_layers
from evalsuite.probe.engines.merged import mergeable_layers, merged_weights
from evalsuite.probe.engines.workers import batch_sizes, cpu_workers, run_batches
from evalsuite.probe.generation import Generation, GenerationSettings, PromptCodec, Request
from evalsuite.probe.guard import OomSplitter, not_run, oom_reason, stopped, stuck


class HFEngine:
    """transformers + peft: the base of ``spec`` with its adapters attached; a job's adapter ``None`` selects the plain
    base. Built by the runner through the engine registry (``hf``)."""

    recorded_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: EngineSpec) -> None:
        import torch

        self.torch = torch
        self.spec = spec
        self.device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        # float32 on CPU (the naive loop's and training's dtype: identical greedy outputs); ``dtype`` in the spec's
        # options overrides it (bfloat16 runs the matmuls at about twice the rate on CPUs with AVX-512 bf16).
        dtype = spec.options.get("dtype") or ("float32" if self.device == "cpu" else "bfloat16")
        self.dtype = getattr(torch, str(dtype))
        self.adapters = dict(spec.adapters)
        hidden = bitsandbytes_hidden() if self.device == "cpu" and self.adapters else contextlib.nullcontext()
        with quiet_libraries(), hidden:
            model = _load_base(spec.base_model, self.dtype, spec.allow_pickle, spec.trust_remote_code)
            for i, (name, path) in enumerate(self.adapters.items()):
                model = _attach(model, name, path, spec.base_model, first=i == 0)
        self.model = model.to(self.device).eval()
        # Batches decoded at once on CPU (engines.workers); the ``cpu_workers`` option overrides the choice.
        self.workers = 1 if self.device != "cpu" else int(spec.options.get("cpu_workers") or cpu_workers(
            torch.get_num_threads(), sum(p.numel() for p in self.model.parameters())))
        self.weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        watch_layers(self.model)  # a decoder layer done is progress for the stall guard: a long prefill is not stuck
        if self.device == "cpu":
            _transpose_storage(self.model)
            use_decode_attention(self.model.get_base_model() if self.adapters else self.model)

    def generate(self, requests: Sequence[Request], adapter: str | None,
                 settings: GenerationSettings) -> list[Generation]:
        """Generations for one column, in the order of ``requests``."""
        return self.generate_mixed([(adapter, r) for r in requests], settings)

    def generate_mixed(self, jobs: Sequence[Job],
                       settings: GenerationSettings) -> list[Generation]:
        """Generations for (column, request) pairs, in order, in one pass over every column: a column's rows fill
        batches together (sorted by prompt length), and on GPU columns share a batch where one would otherwise be
        short (peft's mixed-adapter batches: each row through its own adapter, ``__base__`` through none); a batch
        never mixes different ``max_new_tokens`` or stop-token sets."""
        out = self.generate_shard(jobs, settings, 0, 1)
        return [out[i] for i in range(len(jobs))]

    def generate_shard(self, jobs: Sequence[Job], settings: GenerationSettings, rank: int,
                       world: int) -> dict[int, Generation]:
        """The batches ``k`` with ``k % world == rank`` of the plan ``generate_mixed`` runs, by job index: the unit
        data-parallel probing shards (``evalsuite.probe.parallel``), so a batch is the same in whichever process runs
        it."""
        self.spec.check(jobs)
        codecs = [self.spec.codec(a) for a, _ in jobs]
        encoded = [c.prompt_ids(r.messages, r.tools) for c, (_, r) in zip(codecs, jobs, strict=True)]
        column = {a: k for k, a in enumerate(dict.fromkeys(a for a, _ in jobs))}
        # On CPU a step costs about its rows whatever the mix, and a mixed batch runs peft's per-row adapter hooks
        # (~1.6x per step), so batches hold one column each: a session then runs exactly the batches each column
        # would alone. On GPU a step costs about the same for 8 rows as for 64, so short columns share a batch.
        pure = self.device == "cpu"
        groups = [(r.max_new_tokens, tuple(c.generation_stop_ids), column[a] if pure else -1)
                  for c, (a, r) in zip(codecs, jobs, strict=True)]
        # Same settings together, then one column after another, shortest prompts first.
        order = sorted(range(len(jobs)), key=lambda i: (groups[i], column[jobs[i][0]], len(encoded[i])))
        cut = self._cutter(settings, [len(e) for e in encoded], [r.max_new_tokens for _, r in jobs])
        batches = _batches(order, groups, cut)
        plan = [b for k, b in enumerate(batches) if k % world == rank]
        out: dict[int, Generation] = {}
        splitter: OomSplitter = OomSplitter(lambda i: not_run(oom_reason()))

        def run(batch: list[int], cancel: threading.Event | None) -> list[Generation]:
            return splitter.run(batch, lambda rows: self._batch(
                [encoded[i] for i in rows], [jobs[i][0] for i in rows], [codecs[i] for i in rows],
                jobs[rows[0]][1].max_new_tokens, settings, cancel))

        def done(batch: list[int], gens: list[Generation]) -> None:
            out.update(zip(batch, gens, strict=True))
            if settings.progress is not None:
                settings.progress([(jobs[i][0], g) for i, g in zip(batch, gens, strict=True)])

        # A pure batch's route (its adapter's merged weights) is entered once for all of its column's batches, which
        # the CPU workers then decode together; a mixed batch names its rows' adapters itself.
        if pure:
            plan.sort(key=lambda b: column[jobs[b[0]][0]])
        for _, same in itertools.groupby(plan, key=lambda b: jobs[b[0]][0] if pure else id(b)):
            route = list(same)
            with quiet_libraries(), self._route([jobs[i][0] for i in route[0]]):
                run_batches(run, route, self.workers, done)
        return out

    def _cutter(self, settings: GenerationSettings, lengths: list[int],
                max_new: list[int]) -> Callable[[list[int]], list[int]]:
        """How a run of rows (job indices, shortest prompt first) is cut into batches: nearly equal ones of the
        fixed size, or (``--batch-size auto``) as many rows each as the memory plan fits at the batch's longest
        prompt (:mod:`evalsuite.probe.memplan`): long prompts get smaller batches than short ones."""
        if not settings.auto_batch:
            return lambda rows: batch_sizes(len(rows), settings.batch_size, self.workers)
        from evalsuite.probe.memplan import Shape, parse_memory, plan

        budget = parse_memory(settings.max_memory) if settings.max_memory else None
        memory = plan(self.device, self.weight_bytes, self.workers, budget)
        shape = Shape.of(self.model.config, self.torch.finfo(self.dtype).bits // 8)
        return lambda rows: memory.cut(shape, [lengths[i] for i in rows], max_new[rows[0]], settings.batch_size)

    def _batch(self, prompts: list[list[int]], adapters: list[str | None], codecs: list[PromptCodec], max_new: int,
               settings: GenerationSettings, cancel: threading.Event | None = None) -> list[Generation]:
        if stuck(settings):  # the engine is stuck: a batch not started yet is not started
            return stopped(len(prompts))
        torch = self.torch
        width = max(len(p) for p in prompts)
        pad = codecs[0].tk.token_id(codecs[0].tk.pad_token)
        pad = pad if pad is not None else codecs[0].stop_ids[0]
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        names = [a or "__base__" for a in adapters] if self.adapters and len(set(adapters)) > 1 else None
        torch.manual_seed(settings.seed)
        with torch.inference_mode():
            decoded = greedy_decode(self.model, ids, mask, max_new, set(codecs[0].generation_stop_ids), names,
                                    settings.watch(), cancel)
        elapsed, capped = decoded.seconds, decoded.capped
        results = []
        for row, codec in zip(decoded.rows, codecs, strict=True):
            kept, reason, produced = codec.finish(row, settings.stop_strings)
            text, raw = codec.decode(kept)
            results.append(Generation(text, reason, produced, elapsed / len(prompts), raw,
                                      time_capped=capped and reason == "max-tokens"))
        return results

    def _route(self, adapters: list[str | None]) -> Any:
        """How a batch reaches its adapters: one adapter -> its merged weights on CPU, else ``set_adapter`` (no
        per-call hooks); only the base -> adapters disabled; several -> nothing here: :meth:`_batch` passes peft's
        per-row ``adapter_names`` (hooks on every LoRA layer, ~1.6x per step)."""
        if not self.adapters or len(set(adapters)) > 1:
            return contextlib.nullcontext()
        if adapters[0] is None:
            return self.model.disable_adapter()
        layers = mergeable_layers(self.model, adapters[0]) if self.device == "cpu" else None
        if layers is not None:
            return merged_weights(self.model, layers, adapters[0])
        self.model.set_adapter(adapters[0])
        return contextlib.nullcontext()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence library chatter that is noise in a probe run (weight-loading progress bars, bitsandbytes' optional
    CPU kernel notice, deprecation warnings, the "exceeded the model's maximum length" reminder on long SQuAD
    prompts), and restore the caller's settings afterwards."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    bnb = logging.getLogger("bitsandbytes")
    bnb_level = bnb.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    bnb.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        bnb.setLevel(bnb_level)


@contextlib.contextmanager
def bitsandbytes_hidden() -> Iterator[None]:
    """Import peft and attach adapters with bitsandbytes hidden, when it is not imported yet. peft imports
    bitsandbytes when it is installed, at start-up and again when it attaches a LoRA layer (to offer its quantized
    layers), which drags in torch's compiler stack (networkx, functorch.compile, inductor: over a second of a probe's
    start-up) only for quantized bases; this engine loads bases unquantized. Afterwards everything is as if it had
    never been hidden: peft's cached "is bitsandbytes available" checks are cleared and its modules that saw it
    missing are dropped (re-imported on first use), so a quantized model later in the same process still gets peft's
    bitsandbytes layers."""
    if "bitsandbytes" in sys.modules:
        yield
        return
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]  # `import bitsandbytes` raises ImportError
    try:
        import peft.import_utils

        _forget_bitsandbytes(peft.import_utils)  # peft imported before: let it see bitsandbytes missing
        yield
    finally:
        if "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
            del sys.modules["bitsandbytes"]
        if "peft.import_utils" in sys.modules:
            _forget_bitsandbytes(sys.modules["peft.import_utils"])


def _forget_bitsandbytes(import_utils: Any) -> None:
    for check in (import_utils.is_bnb_available, import_utils.is_bnb_4bit_available):
        check.cache_clear()
    for name in [n for n in sys.modules if n.startswith("peft.") and n.rsplit(".", 1)[-1] == "bnb"]:
        del sys.modules[name]


def _transpose_storage(model: Any) -> None:
    """Store every linear weight column-major (the same ``[out, in]`` tensor, its transpose contiguous): ``F.linear``
    then runs ``x @ W.T`` as a plain ``[rows, in] x [in, out]`` matmul, 3-7% faster on CPU at decode's row counts
    than MKL's transposed-operand path. Values are unchanged; done one layer at a time.

    Every other tensor is copied too, so that none is left in the weights file's memory map: transformers loads
    safetensors through ``mmap``, and while one tensor (the embedding, a norm) still points into it, the whole file's
    pages stay mapped and count in the process's RSS beside the copies (623 MB of SmolLM2-135M's 1,440 MB after
    loading; 926 MB once the map is gone)."""
    import gc

    import torch

    copied: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
                module.weight.data = module.weight.data.t().contiguous().t()
                copied.add(id(module.weight))
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) not in copied and tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()
    gc.collect()  # the map closes once the last tensor into it is gone


def _batches(order: list[int], groups: Sequence[Any], cut: Callable[[list[int]], list[int]]) -> Iterator[list[int]]:
    """Consecutive runs of ``order`` whose ``groups`` agree, each cut into batches of the sizes ``cut(run)`` gives
    (:meth:`HFEngine._cutter`)."""
    for _, same in itertools.groupby(order, key=lambda i: groups[i]):
        rows = list(same)
        start = 0
        for n in cut(rows):
            yield rows[start:start + n]
            start += n


def _load_base(base_model: str, dtype: Any, allow_pickle: bool, trust_remote_code: bool) -> Any:
    from transformers import AutoModelForCausalLM

    path = Path(base_model)
    if path.is_dir() and not any(path.glob("*.safetensors")) and any(path.glob("*.bin")) and not allow_pickle:
        raise EvalsuiteError(f"{path}: base model weights are pickles (*.bin), which can run code when loaded; "
                             "pass --allow-pickle if you trust them")
    try:
        return AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, trust_remote_code=trust_remote_code,
                                                    use_safetensors=None if allow_pickle else True)
    except pickle.UnpicklingError as e:
        raise EvalsuiteError(f"{base_model}: {_refused_pickle(e)}") from None
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalsuiteError(f"{base_model}: cannot load the base model: {first}") from None


def _refused_pickle(e: Exception) -> str:
    """torch loads pickles with ``weights_only``: a pickle that would run code is refused (nothing ran)."""
    detail = " ".join(str(e).split())
    at = detail.find("WeightsUnpickler error:")
    why = detail[at + len("WeightsUnpickler error:"):].split(" Check the documentation")[0].strip() if at >= 0 else ""
    return ("pickle weights refused by torch's safe loader (weights_only): they hold more than tensors, which "
            f"could run code; nothing was run{f' ({why[:160]})' if why else ''}")


def _attach(model: Any, name: str, path: Path, base_model: str, first: bool) -> Any:
    """Attach one adapter; a shape mismatch (an adapter trained on another base) is one clear error."""
    from peft import PeftModel

    try:
        if first:
            return PeftModel.from_pretrained(model, str(path), adapter_name=name)
        model.load_adapter(str(path), adapter_name=name)
        return model
    except pickle.UnpicklingError as e:
        raise EvalsuiteError(f"{path}: adapter {name!r}: {_refused_pickle(e)}") from None
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        detail = " ".join(str(e).split())
        if "size mismatch" in detail:
            at = detail.index("size mismatch")
            detail = detail[at:at + 240]
        raise EvalsuiteError(f"{path}: adapter {name!r} does not fit the base model {base_model} "
                             f"(trained for another base?): {detail[:300]}") from None
