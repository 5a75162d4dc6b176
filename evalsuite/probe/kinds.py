"""What a column argument is. ``evalsuite probe X`` and ``--adapter X`` accept, and may mix:

==============  ==========================================================  ===========================================
kind            recognised by                                               base model from
==============  ==========================================================  ===========================================
``run-dir``     ``evalsuite_manifest.json`` (written by ``evalsuite train``)  the manifest (must agree with
                                                                            ``adapter_config.json``)
``peft``        ``adapter_config.json`` + ``adapter_model.safetensors``     ``adapter_config.json``'s
                                                                            ``base_model_name_or_path``
``checkpoint``  only ``checkpoint-N/`` subfolders: the newest complete one  as ``peft``, from that checkpoint
                (``trainer_state.json`` written, weights present)
``merged``      ``config.json`` + model weights, no ``adapter_config.json``   itself (no base needed)
``hub-adapter`` ``org/name`` that is no folder but is in the local HF cache   as ``peft``
==============  ==========================================================  ===========================================

``--base-model`` overrides the declared base of every adapter. Nothing here loads a tokenizer or a model; the
column's codec and provenance are built by :mod:`evalsuite.probe.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json
from evalsuite.probe.hub import cached_snapshot, hub_cache_dir, looks_like_hub_id
from evalsuite.probe.weights import check_safetensors, model_weight_files, safetensors_header
from evalsuite.rundir.contract import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_WEIGHTS, CHECKPOINT_RE, open_run_dir
from evalsuite.rundir.manifest import MANIFEST_NAME

KINDS = ("run-dir", "peft", "checkpoint", "merged", "hub-adapter")
PICKLE_HINT = "which can run code when loaded; pass --allow-pickle if you trust it"


@dataclass(frozen=True)
class Source:
    """One column's files: ``path`` holds the adapter (or, for ``merged``, the whole model)."""

    arg: str  # as the user gave it
    kind: str
    path: Path
    manifest: dict[str, Any] | None = None
    adapter_config: dict[str, Any] | None = None
    checkpoint: str | None = None  # "checkpoint-60" when picked from a trainer output folder
    skipped: tuple[str, ...] = ()  # newer checkpoints passed over, with why
    hub_id: str | None = None

    @property
    def external(self) -> bool:
        """No evalsuite manifest: trained elsewhere (peft, unsloth, TRL, axolotl, torchtune ...)."""
        return self.manifest is None

    @property
    def is_adapter(self) -> bool:
        return self.kind != "merged"

    @property
    def weights(self) -> Path:
        return self.path / ADAPTER_WEIGHTS if (self.path / ADAPTER_WEIGHTS).exists() else self.path / ADAPTER_PICKLE

    def declared_base(self) -> tuple[str | None, str]:
        """(the base this adapter names, the file that names it)."""
        if self.manifest is not None:
            return str(self.manifest["base_model"]), str(self.path / MANIFEST_NAME)
        value = (self.adapter_config or {}).get("base_model_name_or_path")
        return (value if isinstance(value, str) and value.strip() else None), str(self.path / ADAPTER_CONFIG)


def locate(arg: str | Path, allow_pickle: bool) -> Source:
    """Recognise one column argument; each problem is one error naming the folder (or id) and what is missing."""
    text = str(arg)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder(path, text, allow_pickle)
    if path.exists():
        raise EvalsuiteError(f"{path}: not a folder (pass the folder that holds the adapter or model files)")
    if looks_like_hub_id(text):
        snapshot = cached_snapshot(text)
        if snapshot is None:
            raise EvalsuiteError(f"{text}: no such folder, and no hub model {text!r} in the local Hugging Face cache "
                                 f"({hub_cache_dir()}); evalsuite reads the hub offline: download it first "
                                 f"(hf download {text})")
        found = _folder(snapshot, text, allow_pickle)
        return replace(found, kind="hub-adapter" if found.kind == "peft" else found.kind, hub_id=text)
    raise EvalsuiteError(f"{path}: no such run dir, adapter or model folder")


def _folder(path: Path, arg: str, allow_pickle: bool) -> Source:
    if (path / MANIFEST_NAME).exists():
        rd = open_run_dir(path, allow_pickle=allow_pickle)
        _check_adapter_weights(path, allow_pickle)
        return Source(arg, "run-dir", path, rd.manifest, rd.adapter_config)
    if (path / ADAPTER_CONFIG).exists():
        _check_adapter_weights(path, allow_pickle)
        return Source(arg, "peft", path, adapter_config=_json_object(path / ADAPTER_CONFIG))
    if (path / ADAPTER_WEIGHTS).exists() or (path / ADAPTER_PICKLE).exists():
        raise EvalsuiteError(f"{path}: missing {ADAPTER_CONFIG} (a PEFT adapter folder needs it beside the weights)")
    if (path / "config.json").exists():
        _check_model_weights(path, allow_pickle)
        return Source(arg, "merged", path)
    return _checkpoint(path, arg, allow_pickle)


def _checkpoint(path: Path, arg: str, allow_pickle: bool) -> Source:
    """A trainer output folder: the newest checkpoint the trainer finished saving (``trainer_state.json`` is written
    last, so a run killed mid-save leaves a newer checkpoint without it, which is skipped and named)."""
    steps = sorted(((int(m.group(1)), c) for c in path.iterdir()
                    if c.is_dir() and (m := CHECKPOINT_RE.match(c.name))), reverse=True)
    if not steps:
        raise EvalsuiteError(f"{path}: nothing to probe: no {MANIFEST_NAME}, {ADAPTER_CONFIG}, config.json or "
                             f"checkpoint-N/ (missing {ADAPTER_WEIGHTS}: incomplete run dir?)")
    skipped: list[str] = []
    for _, ckpt in steps:
        why = _incomplete(ckpt)
        if why is None:
            found = _folder(ckpt, arg, allow_pickle)
            return replace(found, kind="checkpoint" if found.kind == "peft" else found.kind, checkpoint=ckpt.name,
                           skipped=tuple(skipped))
        skipped.append(f"{ckpt.name} ({why})")
    raise EvalsuiteError(f"{path}: no complete checkpoint: {'; '.join(skipped)}")


def _incomplete(ckpt: Path) -> str | None:
    if not (ckpt / "trainer_state.json").exists():
        return "no trainer_state.json: stopped while saving"
    if not any((ckpt / f).exists() for f in (ADAPTER_WEIGHTS, ADAPTER_PICKLE)) and not (ckpt / "config.json").exists():
        return "no weights"
    return None


def _check_adapter_weights(path: Path, allow_pickle: bool) -> None:
    if (path / ADAPTER_WEIGHTS).exists():
        check_safetensors(path / ADAPTER_WEIGHTS)
    elif (path / ADAPTER_PICKLE).exists():
        if not allow_pickle:
            raise EvalsuiteError(f"{path}: adapter weights are a pickle ({ADAPTER_PICKLE}), {PICKLE_HINT}")
    else:
        raise EvalsuiteError(f"{path}: missing {ADAPTER_WEIGHTS} (incomplete run dir or adapter folder)")


def _check_model_weights(path: Path, allow_pickle: bool) -> None:
    files = model_weight_files(path)
    for f in files:
        safetensors_header(f, "model weights")
    if files:
        return
    if any(path.glob("*.bin")) or any(path.glob("*.pt")):
        if not allow_pickle:
            raise EvalsuiteError(f"{path}: model weights are pickles (*.bin), {PICKLE_HINT}")
        return
    raise EvalsuiteError(f"{path}: config.json but no model weights (*.safetensors): not a merged model folder")


def _json_object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise EvalsuiteError(f"{path}: expected a JSON object")
    return data
