"""Running an external trainer's own process (axolotl, ``tune run``) with its output in a log file.

The data-parallel re-launch of `evalsuite train` itself (``accelerate launch``, ranks) is the library's
:mod:`evalsuite.launch`; the DeepSpeed / FSDP settings reach TrainingArguments through the TRL backend.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_logged(command: list[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Run an external trainer with its output in ``log_file``. A file, not a pipe: helper processes the trainer
    leaves behind (dataset workers, resource trackers) keep a pipe open and would stall the wait for minutes."""
    with log_file.open("w", encoding="utf-8") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
