"""torchtune backend: our config -> a torchtune LoRA recipe config -> ``tune run`` -> a PEFT adapter in our run dir.

Read top to bottom: encode the rows with evalsuite's encoder (the same tokens and masks as every backend), write
them as JSONL, map the config (``torchtune_mapping``), run ``tune run lora_finetune_single_device`` (or
``--nproc_per_node N lora_finetune_distributed``) in a subprocess, read the loss from its log, convert torchtune's
adapter to PEFT (``torchtune_convert``), then write tokenizer, template, generation config and manifest like the
other backends (``common.write_run_dir``). torchtune's own files stay under ``<run dir>/torchtune/``.

torchtune pins its own torchao (0.6.1 needs ``torchao.dtypes.nf4tensor``, gone in torchao 0.18), so it often lives
in its own environment: set ``EVALSUITE_TORCHTUNE_PYTHON`` to that environment's python (evalsuite must be
importable there too, for the dataset component); by default this interpreter is used.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from evalsuite.trainers import common
from evalsuite.trainers import torchtune_mapping as tm
from evalsuite.trainers.launch import run_logged

from evalsuite.chat.encode import Encoded
from evalsuite.config.load import Config, resolve_path
from evalsuite.errors import EvalsuiteError
from evalsuite.train.backends import TrainOptions, prepare_out_dir

log = logging.getLogger("evalsuite.train")
PYTHON_ENV = "EVALSUITE_TORCHTUNE_PYTHON"
INSTALL = ("pip install torchtune 'torchao<=0.14.1' (torchtune 0.6.1 imports torchao.dtypes.nf4tensor, removed in "
           f"torchao 0.18); or install it in its own environment with evalsuite and set {PYTHON_ENV}=<its python>")
LOG_LINE = re.compile(r"^Step (\d+) \| (.*)$")


def tune_python() -> str:
    return os.environ.get(PYTHON_ENV) or sys.executable


@functools.lru_cache(maxsize=4)
def _probe(python: str) -> tuple[bool, str]:
    code = "import torchtune, torchao, evalsuite; print(torchtune.__version__, torchao.__version__)"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{python}: {e}; {INSTALL}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, f"{last} ({python}); {INSTALL}"
    tt, ao = done.stdout.split()[:2]
    return True, f"torchtune {tt}, torchao {ao} ({python})"


class TorchtuneBackend:
    name = "torchtune"

    def available(self) -> tuple[bool, str]:
        return _probe(tune_python())

    def train(self, config: Config, out_dir: Path, options: TrainOptions) -> Path:
        version = self._check_can_run(out_dir, options)
        prepare_out_dir(out_dir, options)
        started = time.time()
        hf_tok, template, tk = common.load_tokenizer(config)
        encoded, data_files = common.encode_datasets(config, tk, template)
        model_dir = local_model_dir(config)
        hf_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        spec = tm.model_spec(config, hf_config)
        work = out_dir / "torchtune"
        data_file = write_rows(work, encoded)
        paths = tm.RecipePaths(model_dir, checkpoint_files(model_dir), data_file, work)
        cfg_file = write_recipe(config, spec, paths, rows=len(encoded), pad_id=tk.token_id(hf_tok.pad_token) or 0,
                                world_size=options.num_processes)
        run_recipe(cfg_file, options.num_processes)
        curve = read_loss_curve(work / "logs" / "log.txt")
        adapter = newest_epoch(work) / "adapter_model.pt"
        from evalsuite.trainers.torchtune_convert import write_peft_adapter

        write_peft_adapter(adapter, out_dir, spec.family, hf_config, config.lora_r, config.lora_alpha,
                           config.lora_dropout, config.base_model)
        recipe = {"recipe": tm.recipe_name(options.num_processes), "config": str(cfg_file.relative_to(out_dir)),
                  "model": spec.builder}
        common.write_run_dir(out_dir, config, hf_tok, tk, template, data_files, backend=self.name,
                             backend_version=version, train=train_metrics(config, encoded, curve, started, options),
                             extra={"torchtune": recipe})
        return out_dir

    def _check_can_run(self, out_dir: Path, options: TrainOptions) -> str:
        """Refuse before anything is written; the torchtune version otherwise."""
        ok, how = self.available()
        if not ok:
            raise EvalsuiteError(f"the torchtune backend is not available: {how}")
        if options.num_processes > 1 and common.device_summary()["type"] != "cuda":
            # lora_finetune_distributed initialises NCCL ("Distributed package doesn't have NCCL built in" on CPU).
            raise EvalsuiteError("--num-processes with the torchtune backend runs lora_finetune_distributed, which "
                                 "needs CUDA GPUs (NCCL); on a CPU use the trl backend, which runs data-parallel on "
                                 "CPU (gloo)")
        if options.resume:
            raise EvalsuiteError(f"{out_dir}: --resume is not supported by the torchtune backend (torchtune resumes "
                                 "at epoch boundaries only); use the trl backend or start again with --overwrite")
        return how.split(" (")[0]


def write_rows(work: Path, encoded: list[Encoded]) -> Path:
    """The encoded rows as the JSONL evalsuite's torchtune dataset component reads (tokens and labels as trained)."""
    work.mkdir(parents=True, exist_ok=True)
    data_file = work / "train.jsonl"
    data_file.write_text("".join(json.dumps({"tokens": e.input_ids, "labels": e.labels}) + "\n"
                                 for e in encoded), encoding="utf-8")
    return data_file


def write_recipe(config: Config, spec: tm.ModelSpec, paths: tm.RecipePaths, *, rows: int, pad_id: int,
                 world_size: int) -> Path:
    on_cuda = common.device_summary()["type"] == "cuda"
    bf16, _ = common.mixed_precision(config)
    recipe_cfg = tm.recipe_config(config, spec, paths, rows=rows, pad_id=pad_id, device="cuda" if on_cuda else "cpu",
                                  bf16=bf16, world_size=world_size)
    cfg_file = paths.work_dir / "recipe.yaml"
    cfg_file.write_text(yaml.safe_dump(recipe_cfg, sort_keys=False), encoding="utf-8")
    return cfg_file


def train_metrics(config: Config, encoded: list[Encoded], curve: list[dict[str, float]], started: float,
                  options: TrainOptions) -> dict[str, Any]:
    return {
        "global_step": curve[-1]["step"] if curve else 0,
        "loss_curve": curve,
        "final_loss": curve[-1]["loss"] if curve else None,
        "runtime_s": round(time.time() - started, 3),
        "peak_cpu_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "peak_cuda_mb": None,  # the recipe runs in a child process; torchtune logs it in its own log
        "rows": len(encoded),
        "tokens": sum(len(e.input_ids) for e in encoded),
        "effective_batch_size": config.micro_batch_size * config.gradient_accumulation_steps * options.num_processes,
    }


def local_model_dir(config: Config) -> Path:
    """torchtune reads the base model's files from disk: a local directory, or a hub id already in the HF cache."""
    local = resolve_path(config, config.base_model)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(config.base_model, revision=config.revision_of_model, local_files_only=True))
    except Exception:
        raise EvalsuiteError(f"{config.where('base_model')}: base_model: torchtune needs the model files on disk; "
                             f"download {config.base_model!r} first (huggingface-cli download or tune download) or "
                             "point base_model at a local directory") from None


def checkpoint_files(model_dir: Path) -> list[str]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    files = sorted(p.name for p in model_dir.glob("*.safetensors") if not p.name.startswith("adapter"))
    if not files:
        raise EvalsuiteError(f"{model_dir}: no *.safetensors weights for torchtune's HF checkpointer")
    return files


def run_recipe(cfg_file: Path, num_processes: int) -> None:
    recipe = tm.recipe_name(num_processes)
    launch = ["--nproc_per_node", str(num_processes)] if num_processes > 1 else []
    command = [tune_python(), "-m", "torchtune._cli.tune", "run", *launch, recipe, "--config", str(cfg_file)]
    log.info("running %s", " ".join(command))
    log_file = cfg_file.parent / "tune_run.log"
    code = run_logged(command, log_file)
    if code != 0:
        tail = "\n".join(log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:])
        raise EvalsuiteError(f"tune run {recipe} failed (exit {code}); full log in {log_file}:\n{tail}")


def read_loss_curve(log_file: Path) -> list[dict[str, float]]:
    """torchtune's DiskLogger writes ``Step N | loss:X lr:Y ...`` lines."""
    curve = []
    if log_file.is_file():
        for line in log_file.read_text(encoding="utf-8").splitlines():
            m = LOG_LINE.match(line.strip())
            if m:
                fields = dict(kv.split(":", 1) for kv in m.group(2).split() if ":" in kv)
                if "loss" in fields:
                    curve.append({"step": int(m.group(1)), "loss": float(fields["loss"])})
    return curve


def newest_epoch(work: Path) -> Path:
    epochs = sorted((int(p.name.split("_")[1]), p) for p in work.glob("epoch_*") if p.name.split("_")[1].isdigit())
    if not epochs or not (epochs[-1][1] / "adapter_model.pt").is_file():
        raise EvalsuiteError(f"{work}: torchtune wrote no epoch_*/adapter_model.pt")
    return epochs[-1][1]

