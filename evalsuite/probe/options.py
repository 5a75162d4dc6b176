"""The probe options, declared once for both surfaces: ``evalsuite probe`` (argparse) and the pytest plugin.

Each :class:`Option` row names the :class:`ProbeOptions` field it sets, its flag on each surface (the plugin prefixes
``--probe-`` where a bare name could clash with pytest or another plugin), its type, default and help. Both surfaces
add the rows with :func:`add_options` and turn what was parsed into :class:`ProbeOptions` with :func:`options_from`,
which validates with :func:`validate`: one rule set, errors naming the flag as the user typed it.

What only one surface has is declared there: the columns (``DIR ...`` / ``--adapter``), where results go (``--out``,
default ``results.json`` / ``--probe-out``, default none) and the gates (plugin). Nothing heavy is imported here: the
plugin adds these options in every pytest run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalsuite.config.limits import check_range
from evalsuite.errors import EvalsuiteError

Surface = Literal["cli", "plugin"]
PLUGIN_DEST_PREFIX = "evalsuite_"  # pytest dests live in one namespace with every other plugin's
GGUF_TEMPLATES = ("embedded", "training")
OUT_FLAG: dict[Surface, str] = {"cli": "--out", "plugin": "--probe-out"}  # declared by each surface (defaults differ)
DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclass
class ProbeOptions:
    batteries: list[str] = field(default_factory=list)
    battery_dirs: list[Path] = field(default_factory=list)
    explicit_batteries: bool = False  # an unavailable battery is an error (named) or a skip (default set)
    include_base: bool = False
    base_model: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    batch_size: int | None = None  # None: auto, planned per battery from memory (evalsuite.probe.memplan)
    max_memory: str | None = None  # the memory plan's budget: "2G", "800M", "40%" of what is free (None: default)
    max_new_tokens: int | None = None
    max_batch_seconds: float | None = 120.0  # the stall guard: no new token for this long (None: off)
    seed: int = 0
    device: str | None = None
    use_cache: bool = True
    cache_dir: Path | None = None
    squad_dataset: str | None = None
    squad_n: int | None = None
    stop_strings: tuple[str, ...] = ()
    engine: str = "hf"  # a name in evalsuite.probe.engines.ENGINES
    tensor_parallel_size: int = 1  # vllm only
    num_processes: int = 1  # `evalsuite probe` re-launches itself under accelerate; the runner reads the rank
    gguf_template: str = "embedded"  # .gguf columns: the template embedded in the GGUF, or the run dirs' training one
    served_model: str | None = None  # endpoint columns: the model id to ask for (default: the only one served)
    concurrency: int = 4  # endpoint columns: requests in flight at once
    endpoint_timeout: float = 120.0  # endpoint columns: seconds one request may take
    api_key_env: str = "EVALSUITE_API_KEY"  # endpoint columns: the environment variable holding the API key

    @property
    def endpoint(self) -> Any:
        """The endpoint columns' settings (:class:`evalsuite.probe.endpoint_target.EndpointSettings`)."""
        from evalsuite.probe.endpoint_target import EndpointSettings

        return EndpointSettings(self.served_model, self.concurrency, self.endpoint_timeout, self.api_key_env)


@dataclass(frozen=True)
class Option:
    dest: str  # the ProbeOptions field (``no_cache`` sets ``use_cache`` to its opposite)
    cli: str
    plugin: str
    help: str
    type: Callable[[str], Any] | None = None  # None: an on/off flag
    default: Any = None
    repeat: bool = False  # the flag may be given several times (a list)
    metavar: str | None = None

    def flag(self, surface: Surface) -> str:
        return self.cli if surface == "cli" else self.plugin

    def kwargs(self, surface: Surface) -> dict[str, Any]:
        """Keyword arguments for ``add_argument`` / pytest's ``addoption`` (which takes argparse's)."""
        dest = self.dest if surface == "cli" else PLUGIN_DEST_PREFIX + self.dest
        if self.type is None:
            return {"dest": dest, "action": "store_true", "help": self.help}
        kw: dict[str, Any] = {"dest": dest, "type": self.type, "help": self.help, "metavar": self.metavar}
        if self.repeat:
            return {**kw, "action": "append", "default": []}
        return {**kw, "default": self.default}


def batch_size_arg(text: str) -> int | None:
    """``--batch-size``: ``auto`` (None: planned from memory) or a number (checked by :func:`validate`)."""
    return None if text == "auto" else int(text)


OPTIONS: tuple[Option, ...] = (
    Option("include_base", "--base", "--probe-base", "also probe the plain base model as a control column"),
    Option("batteries", "--battery", "--battery", "battery name or .yaml path (repeatable; default: every built-in "
           "battery)", str, repeat=True, metavar="NAME"),
    Option("base_model", "--base-model", "--probe-base-model", "override the base model the adapters name (a "
           "folder, or a hub id in the local Hugging Face cache)", str, metavar="PATH_OR_ID"),
    Option("allow_pickle", "--allow-pickle", "--probe-allow-pickle", "allow pickle (.bin) weights, which can run code"),
    Option("trust_remote_code", "--trust-remote-code", "--probe-trust-remote-code",
           "allow model code from the hub (off by default)"),
    Option("batch_size", "--batch-size", "--probe-batch-size", "prompts per generation batch: auto (the default: "
           "planned per battery from --max-memory and the battery's prompt and answer lengths, at most 64) or N",
           batch_size_arg, None, metavar="auto|N"),
    Option("max_memory", "--max-memory", "--probe-max-memory", "memory the auto batch plan may fill, weights "
           "included: 2G, 800M, or a share of what is free, 40%% (default: half of the free RAM, on CPU at most the "
           "weights again per batch decoded at once; 90%% of the free GPU memory on CUDA)", str, metavar="SIZE"),
    Option("max_new_tokens", "--max-new-tokens", "--probe-max-new-tokens", "override every battery's max_new_tokens",
           int, metavar="N"),
    Option("max_batch_seconds", "--max-batch-seconds", "--probe-max-batch-seconds",
           "stall guard: an engine that gives no new token for S seconds is stalled; its unfinished prompts run "
           "again in smaller batches, and after a second stall are recorded as not run (exit 2). A slow model is "
           "never cut (default 120; 0: off)", float, 120.0, metavar="S"),
    Option("seed", "--seed", "--probe-seed", "seed set before each batch (default 0)", int, 0, metavar="N"),
    Option("device", "--device", "--probe-device", "cpu, cuda, cuda:1 ... (default: cuda when available)", str,
           metavar="DEVICE"),
    Option("no_cache", "--no-cache", "--probe-no-cache", "regenerate even when cached generations exist"),
    Option("squad_dataset", "--squad-dataset", "--squad-dataset", "SQuAD v1.1 dev JSON path or hub id (default: "
           "$EVALSUITE_FIXTURES/...)", str, metavar="PATH_OR_ID"),
    Option("squad_n", "--squad-n", "--squad-n", "questions sampled from the SQuAD dev set (0: all)", int, metavar="N"),
    Option("engine", "--engine", "--probe-engine", "generation engine: hf (transformers + peft, the default), vllm "
           "(multi-LoRA; pip install 'evalsuite[vllm]', needs a GPU), or one installed under the evalsuite.engines "
           "entry points", str, "hf", metavar="NAME"),
    Option("tensor_parallel_size", "--tensor-parallel-size", "--probe-tensor-parallel-size", "vllm: GPUs per model",
           int, 1, metavar="N"),
    Option("num_processes", "--num-processes", "--probe-num-processes", "data-parallel probing: re-launches under "
           "`accelerate launch`, shards the batches over N processes (one per GPU; gloo on CPU) and writes one "
           "results file (`evalsuite probe` only: the pytest plugin refuses N > 1)", int, 1, metavar="N"),
    Option("gguf_template", "--gguf-template", "--probe-gguf-template", "the prompt template of .gguf columns: "
           "embedded (the GGUF's own, what llama.cpp and Ollama render; the default) or training (the run dirs' "
           "training template, to tell template drift from weight drift)", str, "embedded", metavar="WHICH"),
    Option("served_model", "--served-model", "--probe-served-model", "http(s)://HOST:PORT/v1 columns: the model "
           "id to ask the server for (default: the only one its /v1/models lists)", str, metavar="NAME"),
    Option("concurrency", "--concurrency", "--probe-concurrency", "http(s) endpoint columns: requests in flight at "
           "once (default 4)", int, 4, metavar="N"),
    Option("endpoint_timeout", "--endpoint-timeout", "--probe-endpoint-timeout", "http(s) endpoint columns: seconds "
           "one request may take before the run stops with an error (default 120)", float, 120.0, metavar="S"),
    Option("api_key_env", "--api-key-env", "--probe-api-key-env", "http(s) endpoint columns: the environment "
           "variable holding the API key (default EVALSUITE_API_KEY; the key itself is never written anywhere)",
           str, "EVALSUITE_API_KEY", metavar="NAME"),
)
BY_DEST = {o.dest: o for o in OPTIONS}


def add_options(add: Callable[..., Any], surface: Surface) -> None:
    """Declare every row with ``add`` (an argparse parser's ``add_argument``, a pytest group's ``addoption``)."""
    for option in OPTIONS:
        add(option.flag(surface), **option.kwargs(surface))


def options_from(value: Callable[[str], Any], surface: Surface, **extra: Any) -> ProbeOptions:
    """ProbeOptions from the parsed values (``value(dest)``: the argparse namespace, pytest's ``getoption``),
    validated; ``extra`` sets the fields no flag sets (``battery_dirs``)."""
    parsed = {o.dest: value(o.dest if surface == "cli" else PLUGIN_DEST_PREFIX + o.dest) for o in OPTIONS}
    no_cache = parsed.pop("no_cache")
    seconds = parsed.pop("max_batch_seconds")
    options = ProbeOptions(**parsed, use_cache=not no_cache, explicit_batteries=bool(parsed["batteries"]),
                           max_batch_seconds=None if seconds == 0 else seconds, **extra)
    validate(options, surface)
    return options


def validate(options: ProbeOptions, surface: Surface = "cli") -> None:
    """The one rule set for probe options; an error names the flag as ``surface`` spells it."""
    def flag(dest: str) -> str:
        return BY_DEST[dest].flag(surface)

    for dest in ("batch_size", "tensor_parallel_size", "num_processes", "max_new_tokens", "concurrency"):
        value = getattr(options, dest)
        if value is not None and value < 1:
            raise EvalsuiteError(f"{flag(dest)}: expected a positive integer, got {value}")
    if options.max_batch_seconds is not None and options.max_batch_seconds < 0:
        raise EvalsuiteError(f"{flag('max_batch_seconds')}: expected seconds >= 0 (0: no cap), "
                             f"got {options.max_batch_seconds}")
    if options.max_memory is not None:
        from evalsuite.probe.memplan import parse_memory

        parse_memory(options.max_memory, flag("max_memory"))
    if not options.endpoint_timeout > 0:
        raise EvalsuiteError(f"{flag('endpoint_timeout')}: expected seconds > 0, got {options.endpoint_timeout}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", options.api_key_env):
        raise EvalsuiteError(f"{flag('api_key_env')}: expected the name of an environment variable (letters, "
                             "digits, _), not shown here in case it is the key itself: the key goes in that variable, "
                             "never on the command line")
    if options.squad_n is not None and options.squad_n < 0:
        raise EvalsuiteError(f"{flag('squad_n')}: expected 0 (all) or a positive integer, got {options.squad_n}")
    for dest in ("batch_size", "max_new_tokens", "max_batch_seconds", "seed", "squad_n", "tensor_parallel_size",
                 "num_processes"):
        check_range(dest, getattr(options, dest), flag(dest))  # upper bounds, nan and inf (evalsuite.config.limits)
    if options.device is not None:
        _check_device(options.device, flag("device"))
    if surface == "plugin" and options.num_processes > 1:
        raise EvalsuiteError(f"{flag('num_processes')}: data-parallel probing runs from `evalsuite probe "
                             "--num-processes N` only (pytest cannot re-launch itself under accelerate); run that "
                             "with --out and gate its results with `evalsuite gate`")
    if options.gguf_template not in GGUF_TEMPLATES:
        raise EvalsuiteError(f"{flag('gguf_template')}: expected one of {', '.join(GGUF_TEMPLATES)}, "
                             f"got {options.gguf_template!r}")
    from evalsuite.probe.engines import check_engine_name

    check_engine_name(options.engine, flag("engine"))


def _check_device(device: str, flag: str) -> None:
    """A device name torch knows, and for cuda one this machine has (else every batch fails after the model loads)."""
    if not DEVICE.fullmatch(device):
        raise EvalsuiteError(f"{flag}: expected cpu, cuda or cuda:N, got {device!r}")
    if device == "cpu":
        return
    import torch  # only when cuda was asked for, which loads torch anyway

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise EvalsuiteError(f"{flag} {device}: CUDA is not available on this machine; use {flag} cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise EvalsuiteError(f"{flag} {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")


def check_out(out: Path | None, run_dirs: Iterable[Path], options: ProbeOptions, surface: Surface,
              inputs: Iterable[Path | None] = ()) -> None:
    """Refuse, before anything loads, a results file that cannot or must not be written: a folder, a path under a
    file, an unwritable place, one of the inputs (a battery, the SQuAD file, ``inputs``: the gate files), or a file
    inside a probed run dir or a local base model folder. Creates nothing."""
    if out is None:
        return
    from evalsuite.files import check_output_path

    given = [*_input_files(options), *(p for p in inputs if p is not None)]
    run_dirs = list(run_dirs)
    named = [options.base_model] if options.base_model else [_manifest_base(d) for d in run_dirs]
    bases = [Path(b) for b in named if b and Path(b).is_dir()]
    check_output_path(out, f"{OUT_FLAG[surface]} results file", inputs=given, protected_dirs=[*run_dirs, *bases],
                      kind="results")


def _manifest_base(run_dir: Path) -> str | None:
    """The base model a run dir names (its manifest, else its adapter config), read without loading anything; a
    missing or broken file is the plan's to report, not this check's."""
    from evalsuite.config.limits import loads_json

    for name, key in (("evalsuite_manifest.json", "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        try:
            value = loads_json((Path(run_dir) / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError, EvalsuiteError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


def _input_files(options: ProbeOptions) -> list[Path]:
    """The battery files and the SQuAD file the options name (an unknown battery is reported by the plan)."""
    from evalsuite.probe.batteries import resolve_batteries

    try:
        files = resolve_batteries(options.batteries, options.battery_dirs)
    except EvalsuiteError:
        files = [Path(b) for b in options.batteries]
    if options.squad_dataset:
        files.append(Path(options.squad_dataset))
    return files
