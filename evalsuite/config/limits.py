"""The limits every untrusted input is held to, in one place: how deep JSON/YAML may nest, how long one data row may
be, how many messages one conversation may hold, and the ranges of the numeric settings (config keys, CLI options,
battery fields). The README's "Errors and exit codes" lists them.

Every JSON text from outside (data rows, results files, batteries, tool-call arguments in rows and in model output)
is parsed by :func:`loads_json`; YAML goes through :mod:`evalsuite.config.yaml_lines`, which applies
:func:`check_value` too. A value past a limit is an :class:`InputLimit` (an :class:`EvalsuiteError`), whose message
says which limit; the reader that knows the file and line puts them in front.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from evalsuite.errors import EvalsuiteError

MAX_DEPTH = 100  # nesting of lists/objects; real rows, results and configs nest under 10 deep
MAX_ROW_CHARS = 4 * 2**20  # one JSON Lines row or one array element: ~1M tokens, past any context window
MAX_MESSAGES = 1_000  # messages in one conversation (row or battery case): lint renders every prefix of one
INT_DIGITS = 4_300  # Python's own limit on converting a decimal string to an int (sys.get_int_max_str_digits)
MAX_CASES = 100_000  # cases in one battery (written or generated)
MAX_NEW_TOKENS = 131_072  # tokens one answer may generate (a typo like 1000000000 asked for a 256 GB buffer)
MAX_STEPS = 100_000_000
SEED_MAX = 2**32 - 1  # numpy and the CUDA generators take 32-bit seeds
# Prompt tokens a column takes: its context length (config.json), but never less than MIN_PROMPT_LIMIT (rotary
# models, the tiny test model among them, run past a short nominal length) and, when the config gives none,
# MAX_PROMPT_TOKENS.
MIN_PROMPT_LIMIT = 8_192
MAX_PROMPT_TOKENS = 131_072
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")

# The allowed range of each numeric setting, by name: config keys, probe options (their ProbeOptions field) and
# battery fields share the names, so one table says what each may be. The lower bounds are the types' own (a
# positive integer, a fraction); the upper bounds are far past any real use and stop typos and hostile files
# before they allocate, loop or overflow.
RANGES: dict[str, tuple[float, float]] = {
    # config keys
    "sequence_len": (1, 2**20), "micro_batch_size": (1, 65_536), "gradient_accumulation_steps": (1, 65_536),
    "num_epochs": (0, 100_000), "max_steps": (1, MAX_STEPS), "warmup_steps": (0, MAX_STEPS),
    "learning_rate": (0, 10), "weight_decay": (0, 100), "adam_epsilon": (0, 1), "max_grad_norm": (0, 1e6),
    "logging_steps": (1, MAX_STEPS), "save_steps": (1, MAX_STEPS), "save_total_limit": (1, 1_000_000),
    "lora_r": (1, 16_384), "lora_alpha": (0, 1_000_000), "seed": (0, SEED_MAX),
    # probe options and battery fields
    "max_new_tokens": (1, MAX_NEW_TOKENS), "batch_size": (1, 65_536), "max_batch_seconds": (0, 86_400),
    "squad_n": (0, MAX_CASES), "tensor_parallel_size": (1, 1_024), "num_processes": (1, 1_024),
    "n": (0, MAX_CASES), "min_chars": (0, 1_000_000), "max_chars": (0, 1_000_000),
}

# A lone surrogate can only come from a \uD800-\uDFFF escape (UTF-8 text never decodes to one), so only texts
# holding such an escape are walked for one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def prompt_limit(context: int | None) -> int:
    """The most prompt tokens a model with this context length (None: unknown) is given."""
    return MAX_PROMPT_TOKENS if context is None else max(context, MIN_PROMPT_LIMIT)


def context_of(config: Any) -> int | None:
    """A model config's context length (the first of :data:`CONTEXT_KEYS` that is a positive integer)."""
    if not isinstance(config, dict):
        return None
    for key in CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class InputLimit(EvalsuiteError):
    """A value past one of the limits above; the message says which (callers add the file and line)."""


def loads_json(text: str, max_chars: int | None = None) -> Any:
    """``json.loads`` held to the limits: at most ``max_chars`` characters, nesting at most :data:`MAX_DEPTH`, no
    integer past :data:`INT_DIGITS` digits, no lone surrogate. Broken JSON is still ``json.JSONDecodeError`` (the
    caller knows where the text came from and says so)."""
    if max_chars is not None and len(text) > max_chars:
        raise InputLimit(f"{len(text):,} characters, more than the {max_chars:,} allowed for one row")
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputLimit(f"nested more than {MAX_DEPTH} deep") from None
    except json.JSONDecodeError:
        raise
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise InputLimit(number_error(e)) from None
    check_value(value, text)
    return value


def number_error(e: ValueError) -> str:
    """The message for the ValueError Python raises on an integer of more than 4,300 digits (or another bad one)."""
    if "digits" in str(e):
        return f"a number with more than {INT_DIGITS:,} digits"
    return f"a number that cannot be read ({e})"


def check_value(value: Any, text: str | None = None) -> None:
    """Refuse a parsed value nested deeper than :data:`MAX_DEPTH` or holding a lone surrogate (which no file, tokenizer
    or terminal can encode), naming the field. ``text``: the source, to skip what it cannot hold (a text with at most
    MAX_DEPTH brackets cannot nest deeper; one without a ``\\uD8..`` escape holds no surrogate). The first walk
    only looks (a results file of 50,000 samples costs a fraction of its parse); the path is found once something
    is wrong."""
    depth = text is None or text.count("[") + text.count("{") > MAX_DEPTH
    surrogates = text is None or _SURROGATE_ESCAPE.search(text) is not None
    if (depth or surrogates) and not _fine(value, surrogates):
        _locate(value)


def _fine(value: Any, surrogates: bool) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:  # iterative: the point is to survive shapes that would exhaust Python's recursion limit
        item, level = stack.pop()
        if isinstance(item, str):
            if surrogates and _SURROGATE.search(item):
                return False
            continue
        if level >= MAX_DEPTH:
            return False
        if isinstance(item, dict):
            if surrogates and any(isinstance(k, str) and _SURROGATE.search(k) for k in item):
                return False
            children: Any = item.values()
        else:
            children = item
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list, str)))
    return True


def _locate(value: Any) -> None:
    """Raise the :class:`InputLimit` for the first problem :func:`_fine` saw, with the field's path."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, field, level = stack.pop()
        if isinstance(item, str):
            bad = _SURROGATE.search(item)
            if bad:
                raise InputLimit(f"{field or 'value'}: a lone surrogate ({bad.group()!a}) in the text; it is not "
                                 "a character (a broken \\u escape?)")
        elif isinstance(item, (dict, list)):
            if level >= MAX_DEPTH:
                raise InputLimit(f"{field or 'value'}: nested more than {MAX_DEPTH} deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise InputLimit(f"{field or 'value'}: a key holds a lone surrogate ({ascii(key)[:40]})")
                sub = f"{field}[{key}]" if isinstance(key, int) else (f"{field}.{key}" if field else str(key))
                stack.append((child, sub, level + 1))


def range_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the setting ``key`` by :data:`RANGES` (None: fine, or no range known):
    ``expected a number from 1 to 131,072, got nan`` or ``1,000,000,000 is out of range; expected 1 to 131,072``.
    The type is the caller's check (a string is not judged here)."""
    if key not in RANGES or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, high = RANGES[key]
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a number from {_fmt(low)} to {_fmt(high)}, got {value}"
    if not low <= value <= high:
        return f"{_fmt(value)} is out of range; expected {_fmt(low)} to {_fmt(high)}"
    return None


def check_range(key: str, value: Any, name: str | None = None) -> None:
    """Refuse ``value`` outside the range :data:`RANGES` gives ``key`` (and nan, inf), naming the setting as ``name``
    (a flag as the user typed it; default the key) and the range. Called for config keys, CLI options and battery
    fields alike, so ``max_new_tokens: 1000000000`` is one clear error instead of a 256 GB allocation, and
    ``--max-batch-seconds nan`` one instead of a run whose results cannot be written."""
    problem = range_problem(key, value)
    if problem:
        raise EvalsuiteError(f"{name or key}: {problem}")


def _fmt(x: float) -> str:
    if isinstance(x, int):
        return f"{x:,}" if abs(x) < 10**15 else f"{x:.3e}"
    return f"{int(x):,}" if x.is_integer() and abs(x) < 1e15 else f"{x:g}"
