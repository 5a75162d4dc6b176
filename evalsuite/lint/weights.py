"""Read a few embedding rows of a local model without torch: memory-map the safetensors file.

The safetensors layout is an 8-byte little-endian header length, a JSON header (tensor name -> dtype, shape,
data_offsets) and the raw data. We map only the bytes of the requested rows; bfloat16 (which numpy lacks) is widened
to float32 by shifting its 16 bits into the high half of a float32.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError

EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight",
                      "embeddings.weight")
_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F64": ("<f8", 8)}


def _header(path: Path) -> tuple[dict[str, Any], int]:
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise EvalsuiteError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise EvalsuiteError(f"{path}: not a safetensors file (header length {n})")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EvalsuiteError(f"{path}: not a safetensors file ({e})") from None
    return header, 8 + n


def find_embedding(model_dir: Path) -> tuple[Path, str] | None:
    """(file, tensor name) of the input embedding matrix, or None when the dir has no safetensors weights."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        for name, fname in weight_map.items():
            if name.endswith(EMBEDDING_SUFFIXES):
                return model_dir / fname, name
        return None
    for f in sorted(model_dir.glob("*.safetensors")):
        header, _ = _header(f)
        for name in header:
            if name != "__metadata__" and name.endswith(EMBEDDING_SUFFIXES):
                return f, name
    return None


def read_rows(path: Path, name: str, rows: list[int]) -> tuple[Any, int]:
    """float32 array (len(rows), hidden) of the requested rows, and the matrix's number of rows."""
    import numpy as np

    header, base = _header(path)
    info = header.get(name)
    if not isinstance(info, dict) or info.get("dtype") not in _DTYPES or len(info.get("shape", [])) != 2:
        raise EvalsuiteError(f"{path}: {name}: unsupported embedding tensor {info!r}")
    dtype = _DTYPES[info["dtype"]][0]
    n_rows, hidden = info["shape"]
    start = base + info["data_offsets"][0]
    mm = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=(n_rows, hidden))
    picked = np.asarray(mm[[r for r in rows if 0 <= r < n_rows]])
    if info["dtype"] == "BF16":
        picked = (picked.astype(np.uint32) << 16).view(np.float32)
    return picked.astype(np.float32), int(n_rows)


def untrained_rows(path: Path, name: str, ids: list[int], sample: int = 512) -> dict[int, float]:
    """token id -> norm ratio for rows that look untrained: all zero, or an L2 norm under 10% of the median norm
    of ``sample`` ordinary rows (the reserved / chat tokens of a base model that never saw them)."""
    import numpy as np

    _, n_rows = read_rows(path, name, [0])
    step = max(1, n_rows // sample)
    reference, _ = read_rows(path, name, list(range(0, n_rows, step))[:sample])
    median = float(np.median(np.linalg.norm(reference, axis=1))) or 1.0
    rows, _ = read_rows(path, name, [i for i in ids if 0 <= i < n_rows])
    out = {}
    for tid, row in zip([i for i in ids if 0 <= i < n_rows], rows):
        ratio = float(np.linalg.norm(row)) / median
        if ratio < 0.1:
            out[tid] = round(ratio, 4)
    return out
