"""Columns of a probe run: one per adapter run dir, plus the plain base as a control.

Everything here is cheap and torch-free: it validates the run dirs (one clear error per problem: missing or
incomplete dir, corrupt weights, pickle weights without ``--allow-pickle``, adapters trained on different bases)
and builds each column's prompt codec from the tokenizer and the template the adapter was trained with.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.chat.encode import end_of_turn_token
from evalsuite.chat.tokenizer import TokenizerInfo, load_tokenizer
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_file, sha256_text
from evalsuite.probe.generation import PromptCodec
from evalsuite.results.schema import AdapterInfo
from evalsuite.rundir.contract import ADAPTER_CONFIG, ADAPTER_PICKLE, RunDir, open_run_dir, safetensors_problem
from evalsuite.rundir.manifest import manifest_digest


@dataclass
class Target:
    name: str  # the column name in results and test ids
    kind: str  # "adapter" or "base"
    adapter_name: str | None  # peft's internal name (None: adapters disabled)
    path: Path | None
    base_model: str
    codec: PromptCodec
    info: AdapterInfo
    hashes: dict[str, str | None]

    def fingerprint(self, device: str, seed: int,
                    base_fp: Callable[[str, str | None], dict[str, Any]]) -> dict[str, Any]:
        """Everything a generation depends on, for the cache key."""
        revision = (self.info.manifest or {}).get("base_model_revision") if self.info.manifest else None
        return {"column": self.hashes, "base": base_fp(self.base_model, revision), "device": device, "seed": seed,
                "stops": sorted(self.codec.stop_ids), "turn_starts": sorted(self.codec.turn_start_ids)}


def check_safetensors(path: Path, what: str = "adapter weights") -> None:
    """A truncated or corrupt safetensors file fails here, clearly, before any loader sees it."""
    why = safetensors_problem(path)
    if why is not None:
        raise EvalsuiteError(f"{path}: corrupt {what} ({why})")


def _check_base_weights(base_model: str) -> None:
    """A local base whose safetensors files are truncated fails here, naming the file, before minutes of loading."""
    folder = Path(base_model)
    if folder.is_dir():
        for f in sorted(folder.glob("*.safetensors")):
            check_safetensors(f, "base model weights")


def _weights(rd: RunDir) -> Path:
    if rd.weights.exists():
        check_safetensors(rd.weights)
        return rd.weights
    return rd.path / ADAPTER_PICKLE  # open_run_dir already refused it unless --allow-pickle


def _base_ref(value: str) -> str:
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def _stop_ids(rd: RunDir, tk: TokenizerInfo, template: str, base_model: str) -> list[int]:
    """The union of the run dir's generation config and the base's stop ids (:func:`base_stop_ids`)."""
    return list(dict.fromkeys([*rd.stop_token_ids, *base_stop_ids(Path(base_model), tk, template)]))


def base_stop_ids(model: Path, tk: TokenizerInfo, template: str) -> list[int]:
    """The tokenizer's eos, the template's end-of-turn token and the model folder's own
    ``generation_config.eos_token_id``."""
    ids = [i for i in (tk.token_id(t) for t in (tk.eos_token, end_of_turn_token(template, tk))) if i is not None]
    gen = model / "generation_config.json"
    if gen.is_file():
        try:
            eos = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
            ids += [eos] if isinstance(eos, int) else [i for i in (eos or []) if isinstance(i, int)]
        except (OSError, ValueError, AttributeError):
            pass
    return list(dict.fromkeys(ids))


def _warn_template(rd: RunDir, template: str, base_model: str) -> None:
    base = Path(base_model)
    if not (base / "tokenizer.json").is_file():
        return
    try:
        own = load_tokenizer(base).chat_template
    except EvalsuiteError:
        return
    if own is not None and own.strip() != template.strip():
        warnings.warn(f"{rd.path}: the chat template used in training differs from the base model's own template "
                      f"({base}); probing with the training template", stacklevel=3)


def _column_names(paths: list[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.resolve().parent.name}-{p.resolve().name}" if names.count(p.resolve().name) > 1 else p.resolve().name
            for p in paths]


def build_targets(run_dirs: list[Path], include_base: bool, base_override: str | None,
                  allow_pickle: bool) -> list[Target]:
    if not run_dirs:
        raise EvalsuiteError("no run dir given: pass the dir(s) written by `evalsuite train`")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise EvalsuiteError("the same run dir is given twice")
    opened = [open_run_dir(d, allow_pickle=allow_pickle) for d in run_dirs]
    bases = {_base_ref(base_override or rd.base_model) for rd in opened}
    if len(bases) > 1:
        listing = "; ".join(f"{rd.path}: {rd.base_model}" for rd in opened)
        raise EvalsuiteError(f"the adapters were trained on different base models ({listing}); probe them in "
                             "separate runs, or pass --base-model to force one")
    base_model = bases.pop()
    _check_base_weights(base_model)
    targets = []
    for i, (rd, name) in enumerate(zip(opened, _column_names(run_dirs), strict=True)):
        weights = _weights(rd)
        tk = load_tokenizer(rd.path)
        template = rd.chat_template or tk.chat_template
        if template is None:
            raise EvalsuiteError(f"{rd.path}: no chat template (chat_template.jinja or tokenizer_config.json)")
        _warn_template(rd, template, base_model)
        codec = PromptCodec.build(tk, template, _stop_ids(rd, tk, template, base_model))
        hashes: dict[str, str | None] = {
            "weights": sha256_file(weights), "adapter_config": sha256_file(rd.path / ADAPTER_CONFIG),
            "template": sha256_text(template), "tokenizer": sha256_file(rd.path / "tokenizer.json")}
        info = AdapterInfo(name=name, kind="adapter", base_model=base_model, path=str(rd.path),
                           weights_sha256=hashes["weights"], manifest_digest=manifest_digest(rd.manifest),
                           manifest=rd.manifest)
        targets.append(Target(name, "adapter", f"adapter{i}", rd.path, base_model, codec, info, hashes))
    if include_base:
        first = targets[0]
        name = "base" if "base" not in {t.name for t in targets} else "base-model"
        info = AdapterInfo(name=name, kind="base", base_model=base_model)
        hashes = {"weights": None, "adapter_config": None, "template": first.hashes["template"],
                  "tokenizer": first.hashes["tokenizer"]}
        targets.insert(0, Target(name, "base", None, None, base_model, first.codec, info, hashes))
    return targets

