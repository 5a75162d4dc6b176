"""Training-run facts from the adapters' manifests: the memory/time table and the loss curves.

Every manifest field is optional here (older runs, other backends, the plain base): the table shows
what is there and a dash for the rest. The final loss is the one the backend recorded (``train.final_loss``:
TRL's training loss over the run), shown beside the last logged point, which is a different number.
"""

from __future__ import annotations

from typing import Any

from evalsuite.report.columns import Column


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _name(value: Any, *keys: str) -> str | None:
    """A backend/device may be a string or a dict with a name (and version/type)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        parts = [str(value[k]) for k in keys if value.get(k) not in (None, "")]
        return " ".join(parts) or None
    return str(value)


def setting(manifest: dict[str, Any]) -> str:
    """One line like the seeds' VRAM tables: ``qlora r=16 4-bit, adamw_torch, seq 512, micro-batch 2``."""
    raw = manifest.get("config")
    cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
    bits = "4-bit" if cfg.get("load_in_4bit") else "8-bit" if cfg.get("load_in_8bit") else None
    head = " ".join(str(x) for x in (cfg.get("adapter") or "lora",
                                      f"r={cfg['lora_r']}" if cfg.get("lora_r") else None, bits) if x)
    rest = [str(cfg["optimizer"]) if cfg.get("optimizer") else None,
            f"seq {cfg['sequence_len']}" if cfg.get("sequence_len") else None,
            f"micro-batch {cfg['micro_batch_size']}" if cfg.get("micro_batch_size") else None]
    return ", ".join([head, *[r for r in rest if r]])


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def loss_curve(manifest: dict[str, Any]) -> list[tuple[float, float]]:
    points = []
    for p in _get(manifest, "train", "loss_curve") or []:
        step, loss = _num(_get(p, "step")), _num(_get(p, "loss"))
        if step is not None and loss is not None:
            points.append((step, loss))
    return points


def run_rows(cols: list[Column]) -> list[dict[str, Any]]:
    """One row per column whose adapter has a manifest."""
    rows = []
    for col in cols:
        m = col.adapter.manifest
        if not m:
            continue
        raw = m.get("train")
        train: dict[str, Any] = raw if isinstance(raw, dict) else {}
        curve = loss_curve(m)
        rows.append({
            "label": col.label,
            "setting": setting(m),
            "base_model": m.get("base_model") or col.adapter.base_model,
            "backend": _name(m.get("backend"), "name", "version"),
            "device": _name(m.get("device"), "type", "name"),
            "peak_cuda_mb": _num(train.get("peak_cuda_mb")),
            "peak_cpu_rss_mb": _num(train.get("peak_cpu_rss_mb")),
            "runtime_s": _num(train.get("runtime_s")),
            "samples_per_s": _num(train.get("samples_per_s")),
            "step_time_s": _num(train.get("step_time_s")),
            "steps": _num(train.get("global_step")) or (curve[-1][0] if curve else None),
            "final_loss": _num(train.get("final_loss")),
            "last_logged": curve[-1] if curve else None,
            "digest": col.adapter.manifest_digest,
            "curve": curve,
        })
    return rows
