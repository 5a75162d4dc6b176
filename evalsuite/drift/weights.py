"""What the GGUF's weights are, next to the source's: the part of drift that is about weights, not serving.

A GGUF quantized to Q4_1 (or stored in f16 from an f32 source) holds other numbers than the model it came from, so
greedy outputs are expected to move; how far they move is a measurement, reported as a number and gated by the user
(``drift.agreement >= ...``), not a conversion error. A GGUF in the source's own precision should generate what the
source does: there, significant output flips are an error. The types are read from the GGUF's tensor table (the
matrices only: llama.cpp's converter keeps 1-D norms and biases in F32 whatever the outtype) and the source's
``config.json`` ``dtype`` (``torch_dtype`` before transformers 5).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from evalsuite.gguf.reader import GGUFFile

# ggml tensor type ids (ggml.h's enum ggml_type) for the types converters and quantizers write.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 30: "BF16"}
FULL = {"F32", "F16", "BF16"}
TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


@dataclass(frozen=True)
class WeightFacts:
    gguf_types: dict[str, int]  # ggml type name -> how many weight matrices have it
    source_type: str | None  # F32, F16 or BF16 from config.json; None when it does not say

    @property
    def same(self) -> bool:
        """Every matrix in the source's precision (unknown source: every matrix unquantized)."""
        kinds = set(self.gguf_types)
        return kinds == {self.source_type} if self.source_type else kinds <= FULL

    def describe(self) -> str:
        types = ", ".join(f"{name} x{n}" for name, n in sorted(self.gguf_types.items(), key=lambda kv: -kv[1]))
        source = f"{self.source_type} source" if self.source_type else "source of unknown dtype"
        if self.same:
            return f"GGUF matrices {types}, {source}: the same weights, outputs should match"
        why = "quantized" if set(self.gguf_types) - FULL else "stored in another precision"
        return f"GGUF matrices {types}, {source}: {why}, greedy outputs are expected to move"

    def to_json(self) -> dict[str, Any]:
        return {"gguf_types": self.gguf_types, "source_type": self.source_type, "same": self.same}


def weight_facts(file: GGUFFile, config: dict[str, Any]) -> WeightFacts:
    counts = Counter(GGML_TYPES.get(t.type, f"type{t.type}") for t in file.tensors.values() if len(t.shape) >= 2)
    dtype = config.get("dtype") or config.get("torch_dtype")
    return WeightFacts(dict(counts), TORCH_DTYPES.get(dtype) if isinstance(dtype, str) else None)
