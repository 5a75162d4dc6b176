"""Weight files read without torch: safetensors headers, and whether an adapter's LoRA shapes fit a base.

Both checks run at planning time, so a corrupt file or an adapter trained on another base is one clear error before
any minute is spent loading weights (the engine's own size-mismatch error stays as a backstop for bases stored in
a way this reader does not know).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError

# peft's saved keys: base_model.model.<module>.lora_A.weight (the adapter name is stripped on save)
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def safetensors_header(path: Path, what: str = "adapter weights") -> dict[str, Any]:
    """The header of a safetensors file (8-byte length + JSON), checked against the file size so a truncated or
    corrupt file fails here, clearly."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            size = path.stat().st_size
            if length > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(length))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        if not ends or 8 + length + max(ends) > size:
            raise ValueError("tensor data truncated" if ends else "no tensors")
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as e:
        raise EvalsuiteError(f"{path}: corrupt {what} ({e})") from None
    return {k: v for k, v in header.items() if k != "__metadata__"}


def check_safetensors(path: Path) -> None:
    safetensors_header(path)


def model_weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a full model folder (sharded or not), in name order."""
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file() and not p.name.startswith("adapter_"))


def base_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor name -> shape over a model folder's safetensors files ({} when it has none: nothing to check)."""
    shapes: dict[str, list[int]] = {}
    for f in model_weight_files(folder):
        shapes.update({k: list(v["shape"]) for k, v in safetensors_header(f, "model weights").items()})
    return shapes


def check_fit(weights: Path, base_folder: Path, base_name: str) -> None:
    """An adapter whose LoRA matrices do not match the base's layers is one error naming both. A LoRA ``A`` is
    ``[r, in_features]`` and ``B`` is ``[out_features, r]`` of the layer it wraps (peft's Linear layout)."""
    if weights.suffix != ".safetensors" or not base_folder.is_dir():
        return
    shapes = base_shapes(base_folder)
    if not shapes:
        return
    for key, info in safetensors_header(weights).items():
        m = _LORA_KEY.match(key)
        base = shapes.get(f"{m['module']}.weight") if m else None
        if m is None or base is None or len(base) != 2 or len(info["shape"]) != 2:
            continue  # not a Linear LoRA, or a naming this reader does not know: the engine checks it on load
        got, want = (info["shape"][1], base[1]) if m["ab"] == "A" else (info["shape"][0], base[0])
        if got != want:
            raise EvalsuiteError(
                f"{weights.parent}: adapter does not fit the base model {base_name} (trained for another base?): "
                f"size mismatch for {key}: shape {info['shape']}, but the base's {m['module']}.weight is {base}")
