"""One option table for `evalsuite probe` and the pytest plugin: both surfaces offer every row with the same default,
their real parsers (help text and parsed values) hold nothing the table does not know, and one validation names the
flag as each surface spells it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import call_main, tree_digest

from evalsuite.cli import build_parser
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.options import (
    OPTIONS,
    PLUGIN_DEST_PREFIX,
    ProbeOptions,
    batch_size_arg,
    options_from,
    validate,
)

pytest_plugins = ["pytester"]

CLI_ONLY = {"--out", "--help"}  # the columns are positional DIRs; results default to results.json
PLUGIN_ONLY = {"--adapter", "--probe-out", "--gate", "--gate-baseline", "--gate-alpha", "--gate-config"}
# a value of each type, to see it land in the right field
SAMPLE = {int: "3", float: "2.5", str: "x", batch_size_arg: "3"}


def flags_in(help_text: str) -> set[str]:
    """The long options a help text lists (each at the start of its line)."""
    return set(re.findall(r"^\s{2}(?:-\w, )?(--[a-z][a-z-]*)", help_text, flags=re.MULTILINE))


def cli_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        call_main(["probe", "--help"], timeout=60)
    return capsys.readouterr().out


def plugin_help(pytester: pytest.Pytester) -> str:
    text = pytester.runpytest_subprocess("--help").stdout.str()
    start = text.index("evalsuite probes (prompt batteries for LoRA adapters):")
    return text[start:text.index("\n\n", start)]


def test_every_row_is_offered_by_both_surfaces_and_nothing_else(capsys: pytest.CaptureFixture[str],
                                                                 pytester: pytest.Pytester) -> None:
    assert flags_in(cli_help(capsys)) == {o.cli for o in OPTIONS} | CLI_ONLY
    assert flags_in(plugin_help(pytester)) == {o.plugin for o in OPTIONS} | PLUGIN_ONLY
    # the flags the plugin had before the table keep their names
    for kept in ("--probe-base", "--battery", "--probe-base-model", "--probe-allow-pickle", "--probe-batch-size",
                 "--probe-max-new-tokens", "--probe-device", "--probe-no-cache", "--squad-dataset", "--squad-n"):
        assert kept in {o.plugin for o in OPTIONS}


def test_both_parsers_give_each_row_its_default_and_route_each_flag_to_its_field(pytester: pytest.Pytester) -> None:
    cli = build_parser()
    config = pytester.parseconfig()
    for o in OPTIONS:
        cli_default = getattr(cli.parse_args(["probe", "DIR"]), o.dest)
        plugin_default = config.getoption(PLUGIN_DEST_PREFIX + o.dest)
        expected = [] if o.repeat else False if o.type is None else o.default
        assert cli_default == plugin_default == expected, o.dest
    for o in OPTIONS:
        given = [] if o.type is None else [SAMPLE[o.type]]  # type: ignore[index]
        value = True if o.type is None else o.type(SAMPLE[o.type])  # type: ignore[index]
        expected = [value] if o.repeat else value
        assert getattr(cli.parse_args(["probe", "DIR", o.cli, *given]), o.dest) == expected, o.cli
        parsed = pytester.parseconfig(o.plugin, *given).getoption(PLUGIN_DEST_PREFIX + o.dest)
        assert parsed == expected, o.plugin


def parsed(**given: Any) -> Any:
    """``value(dest)`` as a parser would return it: the given values, else each row's default (either surface)."""
    def value(dest: str) -> Any:
        dest = dest.removeprefix(PLUGIN_DEST_PREFIX)
        row = next(o for o in OPTIONS if o.dest == dest)
        return given.get(dest, [] if row.repeat else False if row.type is None else row.default)
    return value


def test_defaults_from_the_table_are_the_library_defaults() -> None:
    assert options_from(parsed(), "cli") == options_from(parsed(), "plugin") == ProbeOptions()


@pytest.mark.parametrize(("dest", "value", "message"), [
    ("batch_size", 0, "{flag}: expected a positive integer, got 0"),
    ("max_new_tokens", -1, "{flag}: expected a positive integer, got -1"),
    ("tensor_parallel_size", 0, "{flag}: expected a positive integer, got 0"),
    ("num_processes", 0, "{flag}: expected a positive integer, got 0"),
    ("max_batch_seconds", -1.0, r"{flag}: expected seconds >= 0 \(0: no cap\), got -1.0"),
    ("engine", "nope", "{flag}: unknown engine 'nope'; known engines: .*hf, vllm"),
    ("squad_n", -5, r"{flag}: expected 0 \(all\) or a positive integer, got -5"),
    ("device", "foo", "{flag}: expected cpu, cuda or cuda:N, got 'foo'"),
    ("device", "cuda:", "{flag}: expected cpu, cuda or cuda:N, got 'cuda:'"),
])
def test_one_validation_names_the_flag_of_each_surface(dest: str, value: Any, message: str) -> None:
    row = next(o for o in OPTIONS if o.dest == dest)
    for surface, flag in (("cli", row.cli), ("plugin", row.plugin)):
        with pytest.raises(EvalsuiteError, match="^" + message.format(flag=re.escape(flag))):
            validate(ProbeOptions(**{dest: value}), surface)  # type: ignore[arg-type]


def test_max_batch_seconds_zero_means_no_cap() -> None:
    assert options_from(parsed(max_batch_seconds=0.0), "cli").max_batch_seconds is None
    assert options_from(parsed(max_batch_seconds=0.0), "plugin").max_batch_seconds is None
    assert options_from(parsed(batteries=["a"]), "plugin").explicit_batteries


def test_cli_bad_option_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert call_main(["probe", tmp_path, "--engine", "nope", "--out", tmp_path / "r.json"], timeout=60) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --engine: unknown engine 'nope'; known engines: ") and err.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--probe-batch-size", "0"], "ERROR: evalsuite: --probe-batch-size: expected a positive integer, got 0"),
    (["--probe-engine", "nope"], "ERROR: evalsuite: --probe-engine: unknown engine 'nope'; known engines: *"),
    (["--probe-num-processes", "2"], "ERROR: evalsuite: --probe-num-processes: data-parallel probing runs from "
                                     "`evalsuite probe --num-processes N` only *"),
])
def test_plugin_bad_option_is_a_usage_error_before_collection(pytester: pytest.Pytester, args: list[str],
                                                              message: str) -> None:
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--adapter", str(pytester.path / "no-such-run"), *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "no such run dir" not in result.stderr.str()  # options are checked before the run dirs


def test_cuda_devices_this_machine_lacks_are_refused() -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for surface, flag in (("cli", "--device"), ("plugin", "--probe-device")):
        with pytest.raises(EvalsuiteError, match=f"^{flag} cuda:{count}: "):
            validate(ProbeOptions(device=f"cuda:{count}"), surface)  # type: ignore[arg-type]
        if count == 0:
            with pytest.raises(EvalsuiteError, match=f"^{flag} cuda: CUDA is not available on this machine"):
                validate(ProbeOptions(device="cuda"), surface)  # type: ignore[arg-type]
    validate(ProbeOptions(device="cpu"))


def bad_outs(tmp_path: Path, unwritable: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """A run dir (only its name matters: outputs are checked before it is opened) and outputs refused for it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_model.safetensors").write_bytes(b"weights")
    battery = tmp_path / "b.yaml"
    battery.write_text("name: b\n", encoding="utf-8")
    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    return run, [(run / "adapter_model.safetensors", "inside the run dir"), (run / "new.json", "inside the run dir"),
                 (run, "is a folder"), (tmp_path / "a-file" / "r.json", "which is a file"),
                 (battery, "is one of the inputs"), (unwritable / "r.json", f"in {unwritable}")]


def test_cli_out_is_checked_before_anything_loads(tmp_path: Path, unwritable_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run, cases = bad_outs(tmp_path, unwritable_dir)
    before = tree_digest(tmp_path)
    for out, needle in cases:
        assert call_main(["probe", run, "--battery", tmp_path / "b.yaml", "--out", out], timeout=60) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {out}: ") and needle in err, err
        assert "--out results file" in err
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("names_base", ["evalsuite_manifest.json", "adapter_config.json"])
def test_cli_out_inside_the_base_a_run_dir_names_is_refused(tmp_path: Path, names_base: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """No --base-model given: the base folder the run dir's manifest (or adapter config) names is protected too."""
    import json

    base, run = tmp_path / "my-base", tmp_path / "run"
    base.mkdir()
    run.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    key = "base_model" if names_base == "evalsuite_manifest.json" else "base_model_name_or_path"
    (run / names_base).write_text(json.dumps({key: str(base)}), encoding="utf-8")
    battery = tmp_path / "b.yaml"
    battery.write_text("name: b\n", encoding="utf-8")
    before = tree_digest(tmp_path)
    for out in (base / "model.safetensors", base / "results.json"):
        assert call_main(["probe", run, "--battery", battery, "--out", out], timeout=60) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {out}: ") and f"model folder {base}," in err, err
    assert tree_digest(tmp_path) == before


def test_plugin_probe_out_is_a_usage_error_before_collection(pytester: pytest.Pytester, tmp_path: Path,
                                                             unwritable_dir: Path) -> None:
    run, cases = bad_outs(tmp_path, unwritable_dir)
    pytester.makeini("[pytest]\n")
    gates = tmp_path / "gates.yaml"
    gates.write_text("gates: []\n", encoding="utf-8")
    before = tree_digest(tmp_path)
    for out, needle in [*cases, (gates, "is one of the inputs")]:
        result = pytester.runpytest_subprocess("--adapter", run, "--battery", tmp_path / "b.yaml",
                                               "--gate-config", gates, "--probe-out", out, timeout=120)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: evalsuite: {out}: *--probe-out results file *{needle}*"])
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert tree_digest(tmp_path) == before
