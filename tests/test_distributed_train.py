"""`evalsuite train --num-processes N`: the TRL backend unchanged under `accelerate launch`, two CPU processes (gloo)
on the tiny model, a couple of steps; plus the launcher's contract (command, rank-0-only writes, pass-through of
the config's deepspeed / fsdp settings) without starting any process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_train import write_config

from evalsuite import launch
from evalsuite.config.load import load_config
from evalsuite.errors import EvalsuiteError
from evalsuite.rundir.contract import RUN_MARKER, open_run_dir
from evalsuite.train.backends import TrainOptions, prepare_out_dir

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # a test run under a launcher must not look launched
        full_env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "evalsuite.cli", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def adapter_layout(run: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    from safetensors import safe_open

    cfg = json.loads((run / "adapter_config.json").read_text())
    with safe_open(str(run / "adapter_model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    keep = ("peft_type", "task_type", "r", "lora_alpha", "target_modules", "modules_to_save")
    return {k: sorted(v) if isinstance(v, list) else v for k, v in cfg.items() if k in keep}, shapes


@pytest.mark.slow
def test_two_cpu_processes_train_one_run_dir(tmp_path: Path, tiny_base: Path) -> None:
    cfg = write_config(tmp_path, tiny_base, save_steps=2, output_dir=str(tmp_path / "ddp"))
    done = cli("train", str(cfg), "--num-processes", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "ddp"
    rd = open_run_dir(run)  # adapter + manifest validate
    manifest = rd.manifest
    assert manifest["device"]["world_size"] == 2
    assert manifest["train"]["global_step"] == 2
    assert manifest["train"]["effective_batch_size"] == 4 * 1 * 2  # micro batch x accumulation x ranks
    # Both ranks trained: the Trainer saves one RNG state per process into the checkpoint...
    ckpt = run / "checkpoint-2"
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    # ... and the distributed sampler gave each rank half the rows: an epoch is ceil(rows / 2 / 4) steps, not
    # the ceil(rows / 4) of a single process.
    rows = len((tmp_path / "data.jsonl").read_text().splitlines())
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["epoch"] == pytest.approx(2 / math.ceil(math.ceil(rows / 2) / 4))
    assert state["epoch"] != pytest.approx(2 / math.ceil(rows / 4))
    # Only rank 0 wrote the run dir and printed it.
    out = done.stdout + done.stderr
    assert out.count("writing the run dir (rank 0 of 2)") == 1 and "rank 1 of 2" not in out
    assert out.count(f"run dir: {run}") == 1
    assert not (run / "training_args.bin").exists()

    # Same adapter format as a single-process run of the same config.
    single = cli("train", str(cfg), "--output-dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    assert open_run_dir(tmp_path / "single").manifest["device"]["world_size"] == 1
    assert adapter_layout(run) == adapter_layout(tmp_path / "single")


def test_relaunch_refuses_a_non_empty_dir_before_starting_processes(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tmp_path / "no-such-base")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    done = cli("train", str(cfg), "--num-processes", "2", timeout=120)
    assert done.returncode == 2
    assert "output dir is not empty" in done.stderr and "Traceback" not in done.stderr
    assert "accelerate" not in done.stderr  # nothing was launched
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_num_processes_must_be_positive(tmp_path: Path) -> None:
    done = cli("train", "x.yaml", "--num-processes", "0", timeout=60)
    assert done.returncode == 2 and "expected a positive integer" in done.stderr


def test_launch_command_and_child_arguments(tmp_path: Path) -> None:
    plan = launch.LaunchPlan(num_processes=2, cuda_devices=0, port=29999)
    args = launch.child_train_args(tmp_path / "c.yaml", tmp_path / "out", "trl", resume=True, max_steps=3)
    cmd = launch.build_command(plan, args)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    i = cmd.index("--num_processes")
    assert cmd[i + 1] == "2" and "--multi_gpu" in cmd and cmd[cmd.index("--main_process_port") + 1] == "29999"
    tail = cmd[cmd.index("-m", 3):]
    assert tail == ["-m", "evalsuite.cli", "train", str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "out"),
                    "--backend", "trl", "--resume", "--max-steps", "3"]
    assert "--overwrite" not in cmd  # the parent clears the dir once; two ranks deleting it would race
    with pytest.raises(EvalsuiteError, match="only 1 CUDA device"):
        launch.LaunchPlan(num_processes=2, cuda_devices=1, port=1).accelerate_args()


def test_relaunch_only_from_the_users_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launch.needs_relaunch("trl", 2) and not launch.needs_relaunch("trl", 1)
    assert not launch.needs_relaunch("torchtune", 2)  # launches its own ranks (tune run --nproc_per_node)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not launch.needs_relaunch("trl", 2)


def test_only_rank_zero_prepares_the_output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "evalsuite_manifest.json").write_text("{}")
    monkeypatch.setenv("RANK", "1")
    assert prepare_out_dir(out, TrainOptions(overwrite=True)) is None
    assert (out / "evalsuite_manifest.json").exists()  # rank 1 leaves it alone
    monkeypatch.setenv("RANK", "0")
    prepare_out_dir(out, TrainOptions(overwrite=True))
    assert out.is_dir() and [p.name for p in out.iterdir()] == [RUN_MARKER]  # cleared, and marked as ours


def test_deepspeed_and_fsdp_pass_through_to_training_arguments(tmp_path: Path) -> None:
    from evalsuite.trainers.trl_backend import scale_out_args
    from trl import SFTConfig

    config = load_config(write_config(tmp_path, tmp_path, fsdp=["full_shard", "auto_wrap"],
                                      fsdp_config={"fsdp_transformer_layer_cls_to_wrap": "Qwen2DecoderLayer"}))
    kwargs = scale_out_args(config)
    assert kwargs == {"fsdp": ["full_shard", "auto_wrap"],
                      "fsdp_config": {"fsdp_transformer_layer_cls_to_wrap": "Qwen2DecoderLayer"}}
    args = SFTConfig(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", **kwargs)
    assert args.fsdp and isinstance(args.fsdp_config, dict)
    assert args.fsdp_config["transformer_layer_cls_to_wrap"] == ["Qwen2DecoderLayer"]

    missing = load_config(write_config(tmp_path, tmp_path, deepspeed="zero2.json"))
    with pytest.raises(EvalsuiteError, match=r"config\.yaml:\d+: deepspeed: no such DeepSpeed config file"):
        scale_out_args(missing)
    (tmp_path / "zero2.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    present = load_config(write_config(tmp_path, tmp_path, deepspeed=str(tmp_path / "zero2.json")))
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        with pytest.raises(EvalsuiteError, match="pip install deepspeed"):
            scale_out_args(present)
    else:
        assert scale_out_args(present)["deepspeed"] == str(tmp_path / "zero2.json")
