"""Scale-out for `evalsuite train --num-processes N`: re-launch the same command under ``accelerate launch``.

The TRL backend runs unchanged inside each process: HF's Trainer reads the ranks torchrun puts in the environment,
wraps the model in DDP (gloo on CPU, NCCL on CUDA), and shards the data with a distributed sampler. DeepSpeed and
FSDP come from the config's ``deepspeed`` / ``fsdp`` / ``fsdp_config`` keys, which the backend passes to
TrainingArguments (the documented way to drive them from the HF Trainer), so the launcher itself only starts the
processes. This module imports nothing heavy: the parent process only validates, prepares the output dir and waits.

Why ``--multi_gpu`` on a CPU box: ``accelerate launch --cpu`` starts one process (or needs ``mpirun``); the
``--multi_gpu`` launcher is torchrun, which starts N local processes whatever the device. Inside them
``TrainingArguments(use_cpu=True)`` selects the gloo backend.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evalsuite.train.backends import TrainerBackend, TrainOptions

# Backends whose training loop is the HF Trainer, which needs nothing but the launcher to run data-parallel.
ACCELERATE_BACKENDS = frozenset({"trl"})


def world_size() -> int:
    """Processes in this run (torchrun / accelerate set ``WORLD_SIZE``; 1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Only rank 0 writes the run dir; the others train and exit."""
    return rank() == 0


def inside_launch() -> bool:
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def free_port() -> int:
    """A free local TCP port for the rendezvous, so concurrent runs (CI, several users) do not collide on 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LaunchPlan:
    num_processes: int
    cuda_devices: int
    port: int

    def accelerate_args(self) -> list[str]:
        """``accelerate launch`` options. Mixed precision stays ``no`` here because TrainingArguments sets it from
        the config (bf16/fp16), which takes precedence inside each process."""
        if self.cuda_devices and self.cuda_devices < self.num_processes:
            from evalsuite.errors import EvalsuiteError

            raise EvalsuiteError(f"--num-processes {self.num_processes}: only {self.cuda_devices} CUDA device(s) "
                                 "visible; use at most one process per GPU")
        return ["--multi_gpu", "--num_processes", str(self.num_processes), "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
                "--main_process_port", str(self.port)]


def build_command(plan: LaunchPlan, train_args: list[str]) -> list[str]:
    """The full command: this Python, accelerate's launcher as a module (no reliance on PATH), then
    ``-m evalsuite.cli train ...`` for every process."""
    return [sys.executable, "-m", "accelerate.commands.launch", *plan.accelerate_args(),
            "-m", "evalsuite.cli", "train", *train_args]


def child_train_args(config: Path, out_dir: Path, backend: str, *, resume: bool,
                     max_steps: int | None) -> list[str]:
    """Arguments for the children. The parent already cleared the dir for --overwrite, so the children never get
    it (two ranks deleting one folder would race); --resume is read-only and safe on every rank."""
    args = [str(config), "--output-dir", str(out_dir), "--backend", backend]
    if resume:
        args.append("--resume")
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    return args


def cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def run(command: list[str]) -> int:
    """Run the launcher in the foreground and return its exit code (the first failing rank's failure)."""
    env = dict(os.environ)
    # Each rank gets its share of the cores unless the user chose; N ranks x all cores thrashes a small box.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, _num_processes(command)))))
    return subprocess.run(command, env=env, check=False).returncode


def _num_processes(command: list[str]) -> int:
    i = command.index("--num_processes")
    return int(command[i + 1])


def needs_relaunch(backend: str, num_processes: int) -> bool:
    """Re-launch only from the user's own process: inside `accelerate launch` the ranks are already there."""
    return num_processes > 1 and backend in ACCELERATE_BACKENDS and not inside_launch()


def relaunch(backend: TrainerBackend, config_path: Path, out_dir: Path, options: TrainOptions,
             max_steps: int | None) -> int:
    """Validate and prepare here (one clean error, nothing half-done), then start N ranks and wait for them."""
    from evalsuite.trainers.common import prepare_out_dir

    from evalsuite.errors import EvalsuiteError

    ok, how = backend.available()
    if not ok:
        raise EvalsuiteError(f"the {backend.name} backend is not installed: {how}")
    out_dir = out_dir.resolve()
    prepare_out_dir(out_dir, options)  # refuses a non-empty dir, or clears it for --overwrite, once
    plan = LaunchPlan(options.num_processes, cuda_device_count(), free_port())
    command = build_command(plan, child_train_args(config_path, out_dir, backend.name, resume=options.resume,
                                                   max_steps=max_steps))
    code = run(command)
    if code != 0:
        print(f"error: training failed in one of the {plan.num_processes} processes (exit {code}); "
              "see the rank output above", file=sys.stderr)
        return 1
    return 0  # rank 0 has printed the run dir


def run_logged(command: list[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Run an external trainer with its output in ``log_file``. A file, not a pipe: helper processes the trainer
    leaves behind (dataset workers, resource trackers) keep a pipe open and would stall the wait for minutes."""
    with log_file.open("w", encoding="utf-8") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode


def relaunch_cli(argv: list[str], num_processes: int) -> int:
    """Run the same evalsuite command line in N processes (used by `evalsuite probe --num-processes N`); inside
    the launch the option is seen but ignored, because WORLD_SIZE is set."""
    plan = LaunchPlan(num_processes, cuda_device_count(), free_port())
    code = run([sys.executable, "-m", "accelerate.commands.launch", *plan.accelerate_args(), "-m", "evalsuite.cli",
                *argv])
    if code != 0:  # the ranks exit 0 on a finished run; a probe verdict is read from the results afterwards
        print(f"error: one of the {num_processes} processes failed (exit {code}); see the output above",
              file=sys.stderr)
    return code
