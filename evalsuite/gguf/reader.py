"""Read a GGUF file's header: metadata and tensor table, torch-, numpy- and llama.cpp-free.

The probe plans and ``evalsuite drift`` start here, so that a file that is not a GGUF, a truncated download or a
conversion cut short is one clear error naming the file before any library loads it (llama.cpp itself only says
"failed to load"). Written from the published GGUF layout (little-endian): the magic ``GGUF``, a version (2 or 3),
the tensor and key/value counts, the typed key/value pairs, the tensor infos, then the tensor data aligned to
``general.alignment`` (32 by default). Only metadata and the tensor table are parsed; tensor data is never read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from evalsuite.config.limits import MAX_DEPTH
from evalsuite.errors import EvalsuiteError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# value type id -> struct format of the scalar types; 8 is a string, 9 an array (type id + count + items).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# ggml tensor type id -> (elements per block, bytes per block), for the types converters write; others are checked
# only for a start offset inside the file.
_TYPE_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
               10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
               24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}
MAX_COUNT = 1 << 32  # a sane bound on counts and lengths: a corrupt header must not make us allocate gigabytes


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: the fastest-varying dimension first (token_embd: (hidden, vocab))
    type: int
    offset: int  # from the start of the tensor data


@dataclass(frozen=True)
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_value(self, key: str) -> Any:
        """``{architecture}.{key}`` (``llama.context_length``), or None."""
        return self.metadata.get(f"{self.architecture}.{key}") if self.architecture else None

    @property
    def tokens(self) -> list[str]:
        value = self.metadata.get("tokenizer.ggml.tokens")
        return list(value) if isinstance(value, list) else []

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def token_id(self, name: str) -> int | None:
        """A special token id from ``tokenizer.ggml.{name}_token_id`` (eos, bos, eot, padding...)."""
        value = self.metadata.get(f"tokenizer.ggml.{name}_token_id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Reader:
    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
        self.f, self.path, self.size = f, path, size

    def take(self, n: int, what: str) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise EvalsuiteError(f"{self.path}: truncated GGUF: the file ends inside {what} "
                                 f"(byte {self.f.tell()} of a {self.size}-byte file)")
        return data

    def scalar(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def count(self, what: str) -> int:
        n = int(self.scalar("<Q", what))
        if n > MAX_COUNT or n > self.size:
            raise EvalsuiteError(f"{self.path}: corrupt GGUF: {what} is {n}")
        return n

    def string(self, what: str) -> str:
        raw = self.take(self.count(f"the length of {what}"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="replace")  # token texts may hold partial UTF-8 sequences

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:  # arrays of arrays: real files nest one deep; thousands would exhaust the stack
            raise EvalsuiteError(f"{self.path}: corrupt GGUF: {what} holds arrays nested more than {MAX_DEPTH} deep")
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            item = int(self.scalar("<I", f"the item type of {what}"))
            n = self.count(f"the length of {what}")
            if item in _SCALARS:  # one read for the whole array (token scores and types are vocab-sized)
                fmt = _SCALARS[item]
                return list(struct.unpack(f"<{n}{fmt[1]}", self.take(n * struct.calcsize(fmt), what)))
            return [self.value(item, what, depth + 1) for _ in range(n)]
        raise EvalsuiteError(f"{self.path}: corrupt GGUF: {what} has unknown value type {vtype}")


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse the header of ``path``; every problem is one :class:`EvalsuiteError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise EvalsuiteError(f"{p}: no such GGUF file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        r = _Reader(f, p, size)
        magic = f.read(4)
        if magic != MAGIC:
            raise EvalsuiteError(f"{p}: not a GGUF file (starts with {magic!r}, expected {MAGIC!r})")
        version = int(r.scalar("<I", "the version"))
        if version not in (2, 3):
            raise EvalsuiteError(f"{p}: GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_kv = r.count("the tensor count"), r.count("the key/value count")
        metadata: dict[str, Any] = {}
        for i in range(n_kv):
            key = r.string(f"key {i}")
            metadata[key] = r.value(int(r.scalar("<I", f"the type of {key}")), key)
        tensors = [_tensor_info(r, i) for i in range(n_tensors)]
        header_end = f.tell()
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise EvalsuiteError(f"{p}: corrupt GGUF: general.alignment is {alignment!r}")
    data_start = -(-header_end // alignment) * alignment
    _check_data(p, size, data_start, tensors)
    return GGUFFile(p, version, metadata, {t.name: t for t in tensors})


def _tensor_info(r: _Reader, i: int) -> TensorInfo:
    name = r.string(f"tensor {i}'s name")
    n_dims = int(r.scalar("<I", f"tensor {name}'s rank"))
    if n_dims > 8:
        raise EvalsuiteError(f"{r.path}: corrupt GGUF: tensor {name} has {n_dims} dimensions")
    shape = tuple(int(r.scalar("<Q", f"tensor {name}'s shape")) for _ in range(n_dims))
    ttype = int(r.scalar("<I", f"tensor {name}'s type"))
    return TensorInfo(name, shape, ttype, int(r.scalar("<Q", f"tensor {name}'s offset")))


def tensor_bytes(t: TensorInfo) -> int | None:
    """The size of a tensor's data, or None for a type this reader does not size."""
    if t.type not in _TYPE_SIZES:
        return None
    per_block, block_bytes = _TYPE_SIZES[t.type]
    n = 1
    for d in t.shape:
        n *= d
    return -(-n // per_block) * block_bytes


def _check_data(p: Path, size: int, data_start: int, tensors: list[TensorInfo]) -> None:
    """Every tensor's data must lie inside the file: a download or conversion cut short fails here."""
    for t in tensors:
        end = data_start + t.offset + (tensor_bytes(t) or 1)
        if end > size:
            raise EvalsuiteError(f"{p}: truncated GGUF: tensor {t.name} ends at byte {end}, the file has {size} "
                                 "(an interrupted download or conversion?)")
