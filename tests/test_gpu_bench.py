"""The GPU check's preparation and configs, on CPU: what ``benchmarks/gpu_bench.py`` hands `evalsuite train` must be
a config evalsuite accepts with the setting it names, and ``gpu_prep.py``'s slimmed bitsandbytes wheel must stay a
consistent wheel. (The device run itself needs a GPU; ``--quick`` rehearses it on CPU.)"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_bench
import gpu_prep

from evalsuite.config.load import load_config


@pytest.mark.parametrize("quick", [False, True])
def test_every_setting_writes_a_config_evalsuite_accepts(tmp_path: Path, quick: bool) -> None:
    base, data = tmp_path / "base", tmp_path / "rows.jsonl"
    gpu_bench.write_rows(data, rows=3, words=50)
    settings = [s for stage in gpu_bench.grid(quick) for s in stage]
    if not quick:  # the tables of the issue: seed 000's precisions at both shapes, seed 004's lengths x batches
        assert {(s.shape, s.bits, s.optimizer) for s in settings} >= {
            (shape, bits, opt) for shape in ("llama-3.2-1b", "llama-3.2-3b")
            for bits, opt in ((16, "adamw_torch"), (8, "adamw_bnb_8bit"), (4, "adamw_torch"))}
        assert len({(s.seq, s.batch) for s in settings if s.shape == "llama-3.2-1b" and s.bits == 16}) >= 4
        assert len({s.name for s in settings}) == len(settings)  # one run dir each
    for s in settings:
        config = load_config(gpu_bench.write_config(tmp_path, base, data, s, steps=6))
        assert (config.load_in_8bit, config.load_in_4bit) == (s.bits == 8, s.bits == 4)
        assert config.adapter_kind == ("qlora" if s.bits == 4 else "lora")
        assert (config.optimizer, config.sequence_len, config.micro_batch_size, config.max_steps) == \
            (s.optimizer, s.seq, s.batch, 6)
        assert not config.train_on_inputs and Path(config.output_dir).name == s.name


def test_rows_keep_the_prompt_short_and_the_reply_long(tmp_path: Path) -> None:
    import json

    rows = [json.loads(line) for line in gpu_bench.write_rows(tmp_path / "r.jsonl", 2, 300).read_text().splitlines()]
    assert len(rows) == 2 and rows[0] != rows[1]
    user, reply = rows[0]["messages"]
    assert len(user["content"].split()) < 5 and len(reply["content"].split()) == 300


def _record(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_slimmed_bitsandbytes_keeps_cuda13_and_a_consistent_record(tmp_path: Path) -> None:
    wheel = tmp_path / "bitsandbytes-0.0-py3-none-any.whl"
    libs = ["cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm64", "xpu2026"]
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("bitsandbytes/__init__.py", "x = 1\n")
        for lib in libs:
            z.writestr(f"bitsandbytes/libbitsandbytes_{lib}.so", lib.encode() * 10)
        z.writestr("bitsandbytes-0.0.dist-info/RECORD", "stale\n")
    gpu_prep.slim_bitsandbytes(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert names == {"bitsandbytes/__init__.py", "bitsandbytes-0.0.dist-info/RECORD",
                         *(f"bitsandbytes/libbitsandbytes_{lib}.so" for lib in ("cpu", "cuda130", "cuda132"))}
        rows = list(csv.reader(io.StringIO(z.read("bitsandbytes-0.0.dist-info/RECORD").decode())))
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            assert digest == _record(z.read(name)) and int(size) == len(z.read(name))
        assert {r[0] for r in rows} == names


def test_the_markdown_shows_failed_and_measured_settings() -> None:
    ok = {"shape": "llama-3.2-1b", "bits": 8, "optimizer": "adamw_bnb_8bit", "seq": 1024, "batch": 4,
          "peak_cuda_mb": 5123.4, "step_time_s": 0.25, "tokens_per_s": 16384, "steps": 6, "wall_s": 30.1}
    bad = {**ok, "bits": 4, "error": "Traceback...\nRuntimeError: CUDA out of memory"}
    text = gpu_bench.markdown({"quick": False, "train": [ok, bad], "skipped": [{"what": "probe", "why": "no time"}]})
    assert "| llama-3.2-1b 8-bit, adamw_bnb_8bit, seq 1024, micro-batch 4 | 5,123 | 0.25 | 16,384 | 6 | 30.1 |" in text
    assert "failed: RuntimeError: CUDA out of memory" in text and "Skipped probe: no time" in text
