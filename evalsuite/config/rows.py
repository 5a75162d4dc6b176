"""Dataset rows -> :class:`Sample` (chat messages or prompt/completion text), with file:row errors.

Local JSON/JSONL files are parsed here rather than by ``datasets`` so that a malformed row is reported with its file
and line, and so the lint path stays free of heavy imports; they are read as a stream (``config.records``), so
:func:`iter_samples` holds one row at a time. Parquet files and hub ids go through ``datasets.load_dataset`` (hub only
when online); with ``streaming=True`` (the lint) parquet files and hub datasets already in the local hub cache are
streamed with ``load_dataset(..., streaming=True)``, offline. The trainer wraps the samples in a
``datasets.Dataset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from evalsuite.config.datasets import DEFAULT_ROLE_MAP, CustomFormat, DatasetSpec
from evalsuite.config.hub import cached_snapshot
from evalsuite.config.limits import MAX_MESSAGES
from evalsuite.config.messages import MISSING, Message, Tools, call_names, expect_str, message, sharegpt_calls, tools
from evalsuite.config.records import iter_records
from evalsuite.errors import EvalsuiteError


@dataclass(frozen=True)
class Sample:
    """One training example. Chat rows carry ``messages`` (and the row's ``tools``); text rows carry ``prompt``
    (masked unless train_on_inputs) and ``completion`` (trained, EOS appended)."""

    source: str
    row: int
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    completion: str | None = None
    tools: Tools | None = None  # the row's tool schemas, passed to the template as `tools=`
    line: int | None = None  # the line the row starts on in its local JSON/JSONL file

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.row}"


def read_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (row number, record) from a .json array or a .jsonl file, as a stream (``config.records``). JSONL rows
    are numbered by line, array elements from 1."""
    for row, _line, record in iter_records(path):
        yield row, record


def _hub_records(spec: DatasetSpec, streaming: bool = False) -> Iterator[tuple[int, Any]]:
    try:
        import datasets
    except ImportError:
        raise EvalsuiteError(f"{spec.path}: reading parquet or hub datasets needs `pip install evalsuite[train]`") \
            from None
    local = Path(spec.path)
    try:
        if local.suffix == ".parquet" or spec.ds_type == "parquet":
            ds = datasets.load_dataset("parquet", data_files=str(local), split=spec.split, streaming=streaming)
        else:
            ds = _hub_dataset(datasets, spec, streaming)
    except FileNotFoundError:
        raise EvalsuiteError(f"{spec.path}: not a local file, and not found on the hub") from None
    except (ConnectionError, OSError) as e:
        raise EvalsuiteError(f"{spec.path}: not a local file, and the hub is unreachable ({type(e).__name__})") \
            from None
    yield from enumerate(ds, start=1)


def _hub_dataset(datasets: Any, spec: DatasetSpec, streaming: bool) -> Any:
    """A hub dataset; streamed from its files when they are in the local hub cache (offline), else loaded whole
    (from the hub, or from datasets' own cache when offline)."""
    snapshot = cached_snapshot(spec.path, "datasets") if streaming else None
    if snapshot is not None:
        try:
            return datasets.load_dataset(str(snapshot), spec.name, split=spec.split, data_files=spec.data_files,
                                         streaming=True)
        except (FileNotFoundError, ValueError):
            pass  # a partial snapshot (the README only, say): let datasets resolve it
    return datasets.load_dataset(spec.path, spec.name, split=spec.split, data_files=spec.data_files)


def _expect_str(value: Any, where: str, field: str) -> str:
    return expect_str(value, where, field)


_MISSING = MISSING


def _turns(rec: Any, spec: DatasetSpec, where: str) -> tuple[str, list[Any], str, str]:
    """(field, turns, role key, content key) of a conversation row, with axolotl's defaults for the shape."""
    sharegpt = spec.type == "sharegpt"
    field = spec.field_messages or ("conversations" if sharegpt or "messages" not in rec else "messages")
    turns = rec.get(field, _MISSING) if isinstance(rec, dict) else _MISSING
    if not isinstance(turns, list) or not turns:
        raise EvalsuiteError(f"{where}: {field}: expected a non-empty list of messages")
    if len(turns) > MAX_MESSAGES:  # the cut renders every prefix of a conversation: time grows as messages squared
        raise EvalsuiteError(f"{where}: {field}: {len(turns):,} messages, more than the {MAX_MESSAGES:,} allowed in "
                             "one row; split the conversation")
    first = turns[0] if isinstance(turns[0], dict) else {}
    role_key = spec.message_field_role or ("from" if sharegpt or "from" in first else "role")
    content_key = spec.message_field_content or ("value" if sharegpt or "value" in first else "content")
    return field, turns, role_key, content_key


def _turn(turn: Any, i: int, keys: tuple[str, str, str], role_map: dict[str, str], where: str,
          last_call: list[str]) -> Message:
    field, role_key, content_key = keys
    at = f"{field}[{i}]"
    if not isinstance(turn, dict):
        raise EvalsuiteError(f"{where}: {at}: expected an object with {role_key} and {content_key}")
    raw_role = _expect_str(turn.get(role_key, _MISSING), where, f"{at}.{role_key}")
    value = turn.get(content_key, _MISSING)
    if raw_role == "function_call" and raw_role not in role_map:
        # ShareGPT tool use (LLaMA-Factory): the call is a JSON value; it becomes an assistant tool call.
        calls = sharegpt_calls(value, where, f"{at}.{content_key}")
        last_call[:] = call_names({"tool_calls": calls})
        return {"role": "assistant", "content": "", "tool_calls": calls}
    role = role_map.get(raw_role, raw_role)
    msg = message(turn, role, value, where, at, (role_key, content_key))
    if raw_role == "observation" and len(last_call) == 1 and "name" not in msg:
        msg["name"] = last_call[0]  # the result of the call just made
    return msg


def _messages(rec: Any, spec: DatasetSpec, where: str) -> tuple[Message, ...]:
    field, turns, role_key, content_key = _turns(rec, spec, where)
    role_map = {**DEFAULT_ROLE_MAP, **spec.roles}
    out: list[Message] = []
    last_call: list[str] = []
    for i, turn in enumerate(turns):
        msg = _turn(turn, i, (field, role_key, content_key), role_map, where, last_call)
        if msg["role"] == "system" and spec.drop_system_message:
            continue
        out.append(msg)
    if spec.system_prompt is not None and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": spec.system_prompt})
    return tuple(out)


def _row_tools(rec: dict[str, Any], where: str) -> Tools | None:
    """The row's ``tools`` (or OpenAI's legacy ``functions``)."""
    key = "tools" if rec.get("tools") is not None else "functions"
    return tools(rec.get(key), where, key)


def _alpaca(rec: Any, spec: DatasetSpec, where: str) -> tuple[Message, ...]:
    instruction = _expect_str(rec.get("instruction", _MISSING), where, "instruction")
    extra = rec.get("input") or ""
    _expect_str(extra, where, "input")
    output = _expect_str(rec.get("output", _MISSING), where, "output")
    user = f"{instruction}\n\n{extra}" if extra else instruction
    system = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
    return (*system, {"role": "user", "content": user}, {"role": "assistant", "content": output})


def _custom(rec: Any, fmt: CustomFormat, where: str) -> tuple[str, str]:
    instruction = _expect_str(rec.get(fmt.field_instruction, _MISSING), where, fmt.field_instruction)
    extra = rec.get(fmt.field_input) or ""
    _expect_str(extra, where, fmt.field_input)
    output = _expect_output(rec.get(fmt.field_output, _MISSING), where, fmt.field_output)
    system = rec.get(fmt.field_system) or fmt.system_prompt or ""
    template = fmt.format if extra or not fmt.no_input_format else fmt.no_input_format
    try:
        prompt = template.format(instruction=instruction, input=extra, system=system)
        head = fmt.system_format.format(system=system) if system and "{system}" not in template else ""
    except (KeyError, IndexError) as e:
        raise EvalsuiteError(f"{where}: format: unknown placeholder {e} (use {{instruction}}, {{input}}, "
                             "{system})") from None
    return head + prompt, output


def _expect_output(value: Any, where: str, field: str) -> str:
    # SQuAD-style rows keep answers as {"text": [...], "answer_start": [...]}; train on the first answer.
    if isinstance(value, dict) and isinstance(value.get("text"), list) and value["text"]:
        value = value["text"][0]
    return _expect_str(value, where, field)


def to_sample(rec: Any, spec: DatasetSpec, source: str, row: int, line: int | None = None) -> Sample:
    where = f"{source}:{row}"
    if not isinstance(rec, dict):
        raise EvalsuiteError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if spec.type in ("chat_template", "messages", "sharegpt"):
        return Sample(source, row, messages=_messages(rec, spec, where), tools=_row_tools(rec, where), line=line)
    if spec.type == "alpaca":
        return Sample(source, row, messages=_alpaca(rec, spec, where), line=line)
    if spec.type == "completion":
        return Sample(source, row, prompt="", completion=_expect_str(rec.get(spec.field, _MISSING), where,
                                                                      spec.field), line=line)
    assert spec.custom is not None
    prompt, completion = _custom(rec, spec.custom, where)
    return Sample(source, row, prompt=prompt, completion=completion, line=line)


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl", ".parquet"))
        if not files:
            raise EvalsuiteError(f"{path}: no .json, .jsonl or .parquet files in this directory")
        return files
    return [path]


def load_samples(spec: DatasetSpec, base_dir: Path | None = None, limit: int | None = None) -> list[Sample]:
    """Read one dataset entry into samples. ``base_dir`` is the config's folder (fallback for relative paths)."""
    return list(islice(iter_samples(spec, base_dir), limit))


def iter_samples(spec: DatasetSpec, base_dir: Path | None = None, streaming: bool = False) -> Iterator[Sample]:
    """The samples of one dataset entry, one at a time (local files are streamed; parquet and hub datasets too
    with ``streaming``)."""
    path = Path(spec.path).expanduser()
    if not path.exists() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.exists():
        rows = 0
        for f in _local_files(path):
            if f.suffix == ".parquet":
                for row, rec in _hub_records(_with_path(spec, f), streaming):
                    rows += 1
                    yield to_sample(rec, spec, str(f), row)
            else:
                for row, line, rec in iter_records(f):
                    rows += 1
                    yield to_sample(rec, spec, str(f), row, line)
        if not rows:
            raise EvalsuiteError(f"{path}: no rows (an empty data file?)")
        return
    if path.suffix in (".json", ".jsonl", ".parquet") or spec.path.startswith((".", "/", "~")):
        raise EvalsuiteError(f"{spec.path}: no such file")
    for row, rec in _hub_records(spec, streaming):
        yield to_sample(rec, spec, spec.path, row)


def _with_path(spec: DatasetSpec, path: Path) -> DatasetSpec:
    from dataclasses import replace

    return replace(spec, path=str(path))
