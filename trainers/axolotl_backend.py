"""axolotl backend: the user's YAML is already axolotl's format, so it is handed to ``axolotl train`` nearly as is;
the adapter axolotl writes is then completed into our run dir (tokenizer and template as axolotl trained with them,
generation config, manifest) by ``common.write_run_dir``.

What changes in the YAML, and why (``axolotl_config``; every other key is passed through untouched):
- ``output_dir`` -> the run dir, so checkpoints land where ``--resume`` looks for them;
- ``max_steps`` when ``--max-steps`` is given; ``resume_from_checkpoint`` for ``--resume``;
- local dataset paths made absolute (evalsuite also looks beside the config; axolotl only in the working dir);
- evalsuite-only keys (``backend``, ``gates``, ``ignore``) dropped;
- the training keys the YAML leaves out are written with evalsuite's defaults (``EXPLICIT_DEFAULTS``), so one file
  trains the same way on every backend: axolotl's own defaults differ (no ``adapter`` means a full fine-tune there,
  and our run dir is a LoRA adapter); on a CPU, ``bf16: auto`` / unset precision becomes false (axolotl 0.19 picked
  fp16 on a CPU and failed: "mat1 and mat2 must have the same dtype");
- without CUDA, axolotl 0.19's auto-enabled Triton LoRA kernels (``lora_*_kernel``) are switched off unless the
  YAML sets them: they allocate on "cuda" unconditionally and fail on CPU (seen here).

axolotl pins its own transformers/peft/trl, so it usually lives in its own environment: set
``EVALSUITE_AXOLOTL_PYTHON`` to that environment's python; by default this interpreter is used.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from evalsuite.trainers import common
from evalsuite.trainers.launch import run_logged

from evalsuite.config.load import ALIASES, Config, resolve_path
from evalsuite.errors import EvalsuiteError
from evalsuite.rundir.contract import ADAPTER_CONFIG, ADAPTER_WEIGHTS, latest_checkpoint
from evalsuite.train.backends import TrainOptions, prepare_out_dir

log = logging.getLogger("evalsuite.train")
PYTHON_ENV = "EVALSUITE_AXOLOTL_PYTHON"
INSTALL = (f"pip install axolotl (best in its own environment: it pins its own transformers/peft/trl; then set "
           f"{PYTHON_ENV}=<that environment's python>)")
EVALSUITE_ONLY_KEYS = ("backend", "gates", "ignore", "train_on_reasoning")
EXPLICIT_DEFAULTS = ("adapter", "lora_r", "lora_alpha", "lora_dropout", "sequence_len", "micro_batch_size",
                     "gradient_accumulation_steps", "num_epochs", "learning_rate", "optimizer", "lr_scheduler",
                     "train_on_inputs", "seed", "chat_template")
CPU_OFF_KERNELS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")


def axolotl_python() -> str:
    return os.environ.get(PYTHON_ENV) or sys.executable


@functools.lru_cache(maxsize=4)
def _probe(python: str) -> tuple[bool, str]:
    try:
        done = subprocess.run([python, "-c", "import axolotl; print(axolotl.__version__)"], capture_output=True,
                              text=True, timeout=300, env=_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{python}: {e}; {INSTALL}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, f"{last} ({python}); {INSTALL}"
    return True, f"axolotl {done.stdout.strip().splitlines()[-1]} ({python})"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # axolotl sends usage telemetry unless told not to; offline it also stalls on retries. The user can override.
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    # Its multi-process launcher runs `accelerate` from PATH: it must be the one of axolotl's environment.
    env["PATH"] = os.pathsep.join([str(Path(axolotl_python()).parent), env.get("PATH", "")])
    return env


class AxolotlBackend:
    name = "axolotl"

    def available(self) -> tuple[bool, str]:
        return _probe(axolotl_python())

    def train(self, config: Config, out_dir: Path, options: TrainOptions) -> Path:
        ok, how = self.available()
        if not ok:
            raise EvalsuiteError(f"the axolotl backend is not available: {how}")
        if options.num_processes > 1 and common.device_summary()["type"] != "cuda":
            # Seen with axolotl 0.19 on CPU: each rank loads the model onto "device <rank>" and transformers fails
            # with "Cannot access accelerator device when none is available".
            raise EvalsuiteError("--num-processes with the axolotl backend needs one CUDA GPU per process; on a CPU "
                                 "use the trl backend, which runs data-parallel on CPU (gloo)")
        resume_from = prepare_out_dir(out_dir, options)
        started = time.time()
        data = axolotl_config(config, out_dir, resume_from=resume_from, cuda=common.device_summary()["type"] == "cuda")
        cfg_file = out_dir / "axolotl_config.yaml"
        cfg_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        run_axolotl(cfg_file, options.num_processes)
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            if not (out_dir / name).is_file():
                raise EvalsuiteError(f"{out_dir}: axolotl finished without writing {name}")
        hf_tok, template, tk = trained_tokenizer(out_dir)
        state = trainer_state(out_dir)
        train_metrics = {
            "global_step": int(state.get("global_step", 0)),
            "loss_curve": common.loss_curve(state.get("log_history", [])),
            "runtime_s": round(time.time() - started, 3),
            "peak_cpu_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "peak_cuda_mb": None,  # training ran in axolotl's process
            "resumed_from": resume_from.name if resume_from else None,
            "effective_batch_size": config.micro_batch_size * config.gradient_accumulation_steps
            * options.num_processes,
        }
        common.write_run_dir(out_dir, config, hf_tok, tk, template, dataset_files(config), backend=self.name,
                             backend_version=how.split(" (")[0].removeprefix("axolotl "), train=train_metrics,
                             extra={"axolotl": {"config": cfg_file.name}})
        return out_dir


def axolotl_config(config: Config, out_dir: Path, *, resume_from: Path | None, cuda: bool) -> dict[str, Any]:
    """The user's YAML with only the changes listed in the module docstring."""
    if not config.train_on_reasoning:
        raise EvalsuiteError(f"{config.where('train_on_reasoning')}: train_on_reasoning: false is evalsuite's own "
                             "labelling; axolotl would train the reasoning anyway (use the trl backend)")
    data = yaml.safe_load(config.path.read_text(encoding="utf-8")) or {}
    for key in EVALSUITE_ONLY_KEYS:
        data.pop(key, None)
    data["output_dir"] = str(out_dir.resolve())
    if config.max_steps is not None and data.get("max_steps") != config.max_steps:
        data["max_steps"] = config.max_steps  # --max-steps on the command line
    if resume_from is not None:
        data["resume_from_checkpoint"] = str(resume_from.resolve())
    for spec in data.get("datasets") or []:
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            local = resolve_path(config, spec["path"])
            if local.exists():
                spec["path"] = str(local.resolve())
    ours = config.settings(EXPLICIT_DEFAULTS)
    for key in EXPLICIT_DEFAULTS:
        if key not in data and not any(data.get(a) is not None for a, k in ALIASES.items() if k == key):
            data[key] = ours[key]
    if not cuda:
        if data.get("bf16") in (None, "auto"):
            data["bf16"] = False
        if data.get("fp16") is None:
            data["fp16"] = False
        for key in CPU_OFF_KERNELS:
            data.setdefault(key, False)
    return data


def run_axolotl(cfg_file: Path, num_processes: int) -> None:
    launcher = ["--launcher", "python"] if num_processes == 1 else \
        ["--launcher", "accelerate", "--", "--num_processes", str(num_processes), "--multi_gpu"]
    command = [axolotl_python(), "-m", "axolotl.cli.main", "train", str(cfg_file), *launcher]
    log.info("running %s", " ".join(command))
    log_file = cfg_file.parent / "axolotl_train.log"
    code = run_logged(command, log_file, env=_env())
    if code != 0:
        lines = [ln for ln in log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
                 if "posthog" not in ln]
        raise EvalsuiteError(f"axolotl train failed (exit {code}); full log in {log_file}:\n" + "\n".join(lines[-15:]))


def trained_tokenizer(out_dir: Path) -> tuple[Any, str | None, Any]:
    """The tokenizer and chat template exactly as axolotl saved them next to the adapter (axolotl resolves template
    names such as ``chatml`` itself, so its saved copy, not ours, is the one training used)."""
    from transformers import AutoTokenizer

    from evalsuite.chat.tokenizer import from_transformers

    hf_tok = AutoTokenizer.from_pretrained(str(out_dir))
    template = hf_tok.chat_template if isinstance(hf_tok.chat_template, str) else None
    return hf_tok, template, from_transformers(hf_tok, template, str(out_dir))


def trainer_state(out_dir: Path) -> dict[str, Any]:
    """The HF Trainer state axolotl's newest checkpoint holds (loss history and global step)."""
    ckpt = latest_checkpoint(out_dir)
    path = ckpt / "trainer_state.json" if ckpt else out_dir / "trainer_state.json"
    if not path.is_file():
        log.warning("%s: no trainer_state.json; the manifest will have no loss curve", out_dir)
        return {}
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def dataset_files(config: Config) -> list[Path]:
    files: list[Path] = []
    for spec in config.datasets:
        p = resolve_path(config, spec.path)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(x for x in p.iterdir() if x.is_file())
    return files
