"""Components the torchtune backend names in its recipe config (``_component_: evalsuite.trainers.torchtune_...``).

torchtune instantiates these inside ``tune run``; nothing here is imported by evalsuite itself. Why our own dataset
and tokenizer stand-in: the rows are encoded once, by ``evalsuite.chat.encode`` (the code the lint checks), and handed
to torchtune as token ids + labels, so every backend trains on exactly the same tokens and label masks. The recipe
only needs ``tokenizer.pad_id`` from a tokenizer; the chat template was already applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PadOnlyTokenizer:
    """What the LoRA recipes use of a tokenizer once the data are pre-tokenized: the pad id (for the collator)."""

    pad_id: int
    max_seq_len: int | None = None


def pad_only_tokenizer(pad_id: int, max_seq_len: int | None = None) -> PadOnlyTokenizer:
    return PadOnlyTokenizer(pad_id=pad_id, max_seq_len=max_seq_len)


class PretokenizedDataset:
    """Map-style dataset of ``{"tokens": [...], "labels": [...]}`` rows from the JSONL the backend wrote; labels are
    aligned with tokens (-100 = not trained), which is torchtune's SFT convention too (the recipe shifts them)."""

    def __init__(self, path: str) -> None:
        self.rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self.rows[index]
        return {"tokens": list(row["tokens"]), "labels": list(row["labels"])}


def pretokenized_dataset(tokenizer: Any, path: str, packed: bool = False, max_seq_len: int | None = None) -> Any:
    """The recipe calls ``instantiate(cfg.dataset, tokenizer)``; ``packed`` uses torchtune's PackedDataset, whose
    packs carry per-sample positions and a block-causal mask (no attention across samples)."""
    ds = PretokenizedDataset(path)
    if not packed:
        return ds
    from torchtune.datasets import PackedDataset

    if max_seq_len is None:
        raise ValueError("packed=True needs max_seq_len")
    return PackedDataset(ds, max_seq_len=max_seq_len, padding_idx=tokenizer.pad_id)


def _lambda_schedule(optimizer: Any, factor: Any, last_epoch: int) -> Any:
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, factor, last_epoch)


def linear_schedule_with_warmup(optimizer: Any, num_warmup_steps: int, num_training_steps: int,
                                last_epoch: int = -1) -> Any:
    """Linear warm-up then linear decay to 0 (transformers' ``linear``), for configs that ask for it."""
    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        return max(0.0, (num_training_steps - step) / max(1, num_training_steps - num_warmup_steps))

    return _lambda_schedule(optimizer, factor, last_epoch)


def constant_schedule_with_warmup(optimizer: Any, num_warmup_steps: int, num_training_steps: int,
                                  last_epoch: int = -1) -> Any:
    """Linear warm-up then constant (transformers' ``constant`` / ``constant_with_warmup``)."""
    def factor(step: int) -> float:
        return min(1.0, step / num_warmup_steps) if num_warmup_steps else 1.0

    return _lambda_schedule(optimizer, factor, last_epoch)

