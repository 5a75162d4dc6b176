"""Processes: where this one stands in a launched run (rank, world size, read from the environment here and nowhere
else) and the ``accelerate launch`` re-launch behind ``--num-processes N`` for `evalsuite train` and `evalsuite probe`.

The re-launch runs the same evalsuite command line in N local processes. Why ``--multi_gpu`` on a CPU box:
``accelerate launch --cpu`` starts one process (or needs ``mpirun``); the ``--multi_gpu`` launcher is torchrun, which
starts N local processes whatever the device (gloo on CPU, NCCL on CUDA). Inside them the HF Trainer (train) or
:mod:`evalsuite.probe.parallel` (probe) read the ranks torchrun puts in the environment. This module imports nothing
heavy: the parent process only validates, prepares and waits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import EvalsuiteError

# Backends whose training loop is the HF Trainer, which needs nothing but the launcher to run data-parallel.
ACCELERATE_BACKENDS = frozenset({"trl"})


def rank() -> int:
    """This process's rank (torchrun / accelerate set ``RANK``; 0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in this run (torchrun / accelerate set ``WORLD_SIZE``; 1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine: its GPU under a launcher."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Only rank 0 writes run dirs, results and caches; the others compute and exit."""
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
            raise EvalsuiteError(f"--num-processes {self.num_processes}: only {self.cuda_devices} CUDA device(s) "
                                 "visible; use at most one process per GPU")
        return ["--multi_gpu", "--num_processes", str(self.num_processes), "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
                "--main_process_port", str(self.port)]


def cli_command(plan: LaunchPlan, argv: list[str]) -> list[str]:
    """This Python, accelerate's launcher as a module (no reliance on PATH), then ``-m evalsuite.cli ARGV...`` for
    every process."""
    return [sys.executable, "-m", "accelerate.commands.launch", *plan.accelerate_args(), "-m", "evalsuite.cli", *argv]


def build_command(plan: LaunchPlan, train_args: list[str]) -> list[str]:
    """The `evalsuite train` command every rank runs."""
    return cli_command(plan, ["train", *train_args])


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


def needs_relaunch(backend: str, num_processes: int) -> bool:
    """Re-launch only from the user's own process: inside `accelerate launch` the ranks are already there."""
    return num_processes > 1 and backend in ACCELERATE_BACKENDS and not inside_launch()


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


def relaunch_cli(argv: list[str], num_processes: int) -> int:
    """Run the same evalsuite command line in N processes (used by `evalsuite probe --num-processes N`); inside
    the launch the option is seen but ignored, because WORLD_SIZE is set."""
    code = run(cli_command(LaunchPlan(num_processes, cuda_device_count(), free_port()), argv))
    if code != 0:  # the ranks exit 0 on a finished run; a probe verdict is read from the results afterwards
        print(f"error: one of the {num_processes} processes failed (exit {code}); see the output above",
              file=sys.stderr)
    return code
