"""Columns of a probe run: one per adapter or merged model (any kind :mod:`evalsuite.probe.kinds` recognises), plus
the plain base of each base model as a control.

Everything here is cheap and torch-free: it recognises each argument, resolves its base (a folder, or a hub id from
the local cache), checks the adapter fits that base, and builds each column's prompt codec from the tokenizer, the
template and the stop ids it was trained with: the adapter folder's own files when it carries them, else the
base's. Every column records where each of those came from (``provenance``), so a results file says what was
probed. Columns are grouped by base model (one engine, one load, per base).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.chat.encode import end_of_turn_token
from evalsuite.chat.tokenizer import TokenizerInfo, _chat_template, load_tokenizer
from evalsuite.config.limits import context_of
from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json, sha256_file, sha256_files, sha256_text
from evalsuite.probe.generation import PromptCodec
from evalsuite.probe.hub import BaseRef, resolve_base
from evalsuite.probe.kinds import Source, locate
from evalsuite.probe.weights import check_fit, model_weight_files
from evalsuite.results.schema import AdapterInfo
from evalsuite.rundir.contract import ADAPTER_CONFIG, GENERATION_CONFIG, safetensors_problem
from evalsuite.rundir.manifest import manifest_digest


@dataclass
class Target:
    name: str  # the column name in results and test ids
    kind: str  # "adapter", "merged" or "base"
    adapter_name: str | None  # peft's internal name (None: the engine's plain model)
    path: Path | None
    base_model: str  # the folder (or id) the engine loads
    codec: PromptCodec
    info: AdapterInfo
    hashes: dict[str, str | None]
    engine: str | None = None  # the engine that runs this column; None: the run's --engine (a .gguf column: gguf)
    engine_info: dict[str, Any] | None = None  # per-column engine facts recorded in the results (a GGUF's stops)

    def fingerprint(self, device: str, seed: int,
                    base_fp: Callable[[str, str | None], dict[str, Any]]) -> dict[str, Any]:
        """Everything a generation depends on, for the cache key."""
        revision = (self.info.manifest or {}).get("base_model_revision") if self.info.manifest else None
        return {"column": self.hashes, "base": base_fp(self.base_model, revision), "device": device, "seed": seed,
                "stops": sorted(self.codec.stop_ids), "turn_starts": sorted(self.codec.turn_start_ids),
                **({"engine_info": self.engine_info} if self.engine_info else {})}


@dataclass
class _Prompting:
    """A column's codec and where its parts came from."""

    codec: PromptCodec
    template: str
    provenance: dict[str, Any]
    tokenizer_sha256: str


def chat_template_in(folder: Path) -> tuple[str, Path] | None:
    """The chat template a folder carries and its file, read the way the tokenizer loader reads it
    (``chat_template.jinja``, ``chat_template.json``, then ``tokenizer_config.json``); needs no tokenizer.json."""
    config = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    template = _chat_template(folder, config if isinstance(config, dict) else {})
    if template is None:
        return None
    names = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")
    return template, next(folder / n for n in names if (folder / n).exists())


def _first_with(dirs: list[tuple[Path, str]], name: str) -> tuple[Path, str] | None:
    return next(((d, role) for d, role in dirs if (d / name).is_file()), None)


def _eos_ids(path: Path) -> list[int]:
    try:
        eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return []
    return [eos] if isinstance(eos, int) else [i for i in (eos or []) if isinstance(i, int)]


def _stop_ids(own: list[Path], base: Path | None, tk: TokenizerInfo, template: str) -> tuple[list[int], list[str]]:
    """The union of the column's generation config (its own, else none), the tokenizer's eos, the template's
    end-of-turn token and the base model's own ``generation_config.eos_token_id``; and where each came from."""
    ids: list[int] = []
    sources: list[str] = []
    gen = _first_with([(d, "own") for d in own], GENERATION_CONFIG)
    for path in ([gen[0] / GENERATION_CONFIG] if gen else []):
        ids += _eos_ids(path)
        sources.append(str(path))
    eot = end_of_turn_token(template, tk)
    for what, token in (("tokenizer eos_token", tk.eos_token), ("template end of turn", eot)):
        tid = tk.token_id(token)
        if tid is not None:
            ids.append(tid)
            sources.append(f"{what} {token}")
    if base is not None and (base / GENERATION_CONFIG).is_file() and base not in own:
        ids += _eos_ids(base / GENERATION_CONFIG)
        sources.append(str(base / GENERATION_CONFIG))
    return list(dict.fromkeys(ids)), sources


def base_stop_ids(model: Path, tk: TokenizerInfo, template: str) -> list[int]:
    """The tokenizer's eos, the template's end-of-turn token and the model folder's own
    ``generation_config.eos_token_id`` (a model probed without a column of its own: the judge)."""
    return _stop_ids([], model, tk, template)[0]


def _check_base_weights(folder: Path) -> None:
    """A local base whose safetensors files are truncated fails here, naming the file, before minutes of loading."""
    for f in sorted(folder.glob("*.safetensors")):
        why = safetensors_problem(f)
        if why is not None:
            raise EvalsuiteError(f"{f}: corrupt base model weights ({why})")


def _prompting(own: list[tuple[Path, str]], base: Path | None, where: Path) -> _Prompting:
    """Tokenizer and template from the column's own folders when they carry them, else from the base; ``own``
    pairs each folder with what it is ("adapter", "trainer output", "model")."""
    dirs = own + ([(base, "base")] if base is not None else [])
    found = _first_with(dirs, "tokenizer.json")
    if found is None:
        raise EvalsuiteError(f"{where}: no tokenizer.json here" + (f" or in the base model {base}" if base else ""))
    tk = load_tokenizer(found[0])
    template = next(((t, role) for d, role in dirs if (t := chat_template_in(d)) is not None), None)
    if template is None:
        raise EvalsuiteError(f"{where}: no chat template (chat_template.jinja or tokenizer_config.json) here"
                             + (f" or in the base model {base}" if base else ""))
    (text, file), role = template
    stops, stop_from = _stop_ids([d for d, _ in own], base, tk, text)
    provenance = {"tokenizer": {"from": found[1], "file": str(found[0] / "tokenizer.json")},
                  "template": {"from": role, "file": str(file), "sha256": sha256_text(text)},
                  "stops": {"ids": stops, "from": stop_from}}
    context = _context([d for d, _ in dirs])
    return _Prompting(PromptCodec.build(tk, text, stops, context), text, provenance,
                      sha256_file(found[0] / "tokenizer.json"))


def _context(dirs: list[Path]) -> int | None:
    """The context length in the first config.json of ``dirs`` (a merged model's own, else the base's)."""
    for d in dirs:
        if (d / "config.json").is_file():
            try:
                return context_of(read_json(d / "config.json"))
            except EvalsuiteError:
                return None  # a broken config is the engine's to report, with its own message
    return None


def _warn_template(where: Path, template: str, base: Path) -> None:
    own = chat_template_in(base)
    if own is not None and own[0].strip() != template.strip():
        warnings.warn(f"{where}: the chat template used in training differs from the base model's own template "
                      f"({base}); probing with the training template", stacklevel=4)


def _same_ref(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a.rstrip("/") == b.rstrip("/")


def _base_of(src: Source, override: str | None) -> tuple[BaseRef, str]:
    declared, where = src.declared_base()
    config_base = (src.adapter_config or {}).get("base_model_name_or_path")
    if src.manifest is not None and isinstance(config_base, str) and config_base and override is None \
            and not _same_ref(str(declared), config_base):
        raise EvalsuiteError(f"{src.path}: the run's {Path(where).name} says the base model is {declared}, but its "
                             f"{ADAPTER_CONFIG} says {config_base}; fix the one that is wrong, or pass --base-model")
    if override is not None:
        declared, where = override, "--base-model"
    if declared is None:
        raise EvalsuiteError(f"{src.path / ADAPTER_CONFIG}: base_model_name_or_path: missing; pass --base-model "
                             "PATH_OR_ID")
    label = where if where == "--base-model" else Path(where).name
    return resolve_base(declared, str(src.path), label), label


def _adapter_target(src: Source, name: str, adapter_name: str, base: BaseRef, base_from: str) -> Target:
    weights = src.weights
    _check_base_weights(base.folder)
    check_fit(weights, base.folder, base.name)
    own = [(src.path, "adapter")] + ([(src.path.parent, "trainer output")] if src.checkpoint else [])
    p = _prompting(own, base.folder, src.path)
    if p.provenance["template"]["from"] != "base":
        _warn_template(src.path, p.template, base.folder)
    hashes: dict[str, str | None] = {
        "weights": sha256_file(weights), "adapter_config": sha256_file(src.path / ADAPTER_CONFIG),
        "template": sha256_text(p.template), "tokenizer": p.tokenizer_sha256}
    provenance = {"kind": src.kind, "base": _base_provenance(base, base_from), **p.provenance,
                  **_origin(src)}
    info = AdapterInfo(name=name, kind="adapter", base_model=base.name, path=str(src.path),
                       weights_sha256=hashes["weights"],
                       manifest_digest=manifest_digest(src.manifest) if src.manifest is not None else None,
                       manifest=src.manifest, source=src.kind, external=src.external, provenance=provenance)
    return Target(name, "adapter", adapter_name, src.path, str(base.folder), p.codec, info, hashes)


def _merged_target(src: Source, name: str) -> Target:
    """A merged (or full fine-tuned) model: its own base, its own column; its weights are hashed as a whole."""
    folder = src.path.resolve()
    p = _prompting([(folder, "model")], None, folder)
    weights = sha256_files(model_weight_files(folder) or sorted(folder.glob("*.bin")))
    hashes: dict[str, str | None] = {"weights": weights, "adapter_config": None,
                                     "template": sha256_text(p.template), "tokenizer": p.tokenizer_sha256}
    provenance = {"kind": src.kind, "base": {"name": str(folder), "from": "itself (merged model)"}, **p.provenance,
                  **_origin(src)}
    info = AdapterInfo(name=name, kind="merged", base_model=str(folder), path=str(folder), weights_sha256=weights,
                       source=src.kind, external=src.external, provenance=provenance)
    return Target(name, "merged", None, folder, str(folder), p.codec, info, hashes)


def _base_provenance(base: BaseRef, base_from: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": base.name, "from": base_from, "folder": str(base.folder)}
    if base.hub_id:
        out.update(hub_id=base.hub_id, revision=base.revision, resolved="local Hugging Face cache (offline)")
    return out


def _origin(src: Source) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if src.checkpoint:
        out["checkpoint"] = {"name": src.checkpoint, "output_dir": str(src.path.parent), "skipped": list(src.skipped)}
    if src.hub_id:
        out["hub_id"] = src.hub_id
        out["snapshot"] = str(src.path)
    return out


def _column_name(src: Source) -> str:
    if src.hub_id:
        return src.hub_id.rsplit("/", 1)[-1]
    if src.checkpoint:
        return f"{src.path.parent.resolve().name}-{src.checkpoint}"
    return src.path.resolve().name


def _unique(names: list[str], longer: list[str]) -> list[str]:
    """``names``, with the ones that clash replaced by their ``longer`` form, then numbered if still clashing."""
    names = [longer[i] if names.count(n) > 1 else n for i, n in enumerate(names)]
    return [f"{n}-{names[:i].count(n) + 1}" if names.count(n) > 1 and names[:i].count(n) else n
            for i, n in enumerate(names)]


def _base_target(first: Target, name: str) -> Target:
    """The plain base of ``first``'s group, rendered with the first column's codec."""
    prov = first.info.provenance or {}
    info = AdapterInfo(name=name, kind="base", base_model=first.info.base_model, source="base", external=False,
                       provenance={"kind": "base", **{k: prov[k] for k in ("base", "template", "tokenizer", "stops")
                                                      if k in prov}})
    hashes = {"weights": None, "adapter_config": None, "template": first.hashes["template"],
              "tokenizer": first.hashes["tokenizer"]}
    return Target(name, "base", None, None, first.base_model, first.codec, info, hashes)


def build_targets(args: list[Path], include_base: bool, base_override: str | None,
                  allow_pickle: bool) -> list[Target]:
    """One target per argument, grouped by base model (first appearance first), each group's base column first."""
    if not args:
        raise EvalsuiteError("no run dir given: pass run dirs, PEFT adapter folders, trainer output folders, merged "
                             "models or cached hub adapter ids")
    sources = [locate(a, allow_pickle) for a in args]
    paths = [s.path.resolve() for s in sources]
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise EvalsuiteError(f"{twice}: the same run dir is given twice")
    names = _unique([_column_name(s) for s in sources],
                    [f"{s.path.resolve().parent.name}-{_column_name(s)}" for s in sources])
    targets = []
    for i, (src, name) in enumerate(zip(sources, names, strict=True)):
        if src.is_adapter:
            base, base_from = _base_of(src, base_override)
            targets.append(_adapter_target(src, name, f"adapter{i}", base, base_from))
        else:
            targets.append(_merged_target(src, name))
    for src in sources:
        if src.skipped:
            warnings.warn(f"{src.path.parent}: probing {src.checkpoint}, the newest complete checkpoint (skipped: "
                          f"{'; '.join(src.skipped)})", stacklevel=3)
    return _grouped(targets, include_base)


def _grouped(targets: list[Target], include_base: bool) -> list[Target]:
    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(t.base_model, []).append(t)
    out: list[Target] = []
    taken = {t.name for t in targets}
    adapter_groups = [g for g in groups.values() if any(t.kind == "adapter" for t in g)]
    for members in groups.values():
        if include_base and members in adapter_groups:
            first = next(t for t in members if t.kind == "adapter")
            name = "base" if len(adapter_groups) == 1 else f"base-{Path(first.info.base_model).name}"
            name = name if name not in taken else f"{name}-model"
            taken.add(name)
            out.append(_base_target(first, name))
        out += members
    return out
