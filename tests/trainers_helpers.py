"""Build the TRL trainer exactly as the backend does, without training, to inspect what it would feed the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.trainers import common, trl_backend

from evalsuite.config.load import load_config


def build_trainer_only(cfg: Path) -> tuple[Any, list[Any], Any]:
    config = load_config(cfg)
    hf_tok, template, tk = common.load_tokenizer(config)
    encoded, _ = common.encode_datasets(config, tk, template)
    model = trl_backend._load_model(config, hf_tok)
    trainer = trl_backend._build_trainer(config, Path(config.output_dir), model, hf_tok, common.to_dataset(encoded))
    return trainer, encoded, tk
