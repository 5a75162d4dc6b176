"""The render budget: a chat template from the hub is untrusted code, so one render gets a time budget, a size
budget and a memory budget, and ends in one clear error when it goes over any of them, instead of hanging or filling
the memory of the lint, the trainer or the probe.

jinja's sandbox stops escapes but not work: ``{% for i in range(99999) %}{% for j in range(99999) %}`` runs for hours
and ``'x' * 3000000000`` asks for 3 GB at once. Time is checked where a template can spend it without end: every
``{% for %}`` iteration, every call (macros, methods) and every filter, through the hooks :func:`guard_ast` plants,
the sandbox's ``call`` and the filter guards (:mod:`evalsuite.chat.budget_filters`). What runs inside *one* C call
cannot be interrupted, so it is checked *before* the call, from the sizes of its operands: the operators that grow
strings, lists and integers (``*``, ``**``, ``+``, ``%``, ``~``; integer arithmetic is refused past :data:`INT_BITS`,
where multiplication and division turn superlinear), the padding/replacing/joining/translating methods and filters,
turning a list or dict into text (its text length is estimated by a bounded walk first), ``sum``, sorting and the
other filters that loop in C. Memory that many small operations build up is watched too: the process's resident
memory may grow by at most :data:`MEMORY` during one render. A legitimate template never comes near any limit (a
render takes milliseconds and writes one conversation).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import jinja2.nodes as nodes
from jinja2.utils import Namespace

SECONDS = float(os.environ.get("EVALSUITE_RENDER_SECONDS") or 10.0)  # per render
CHARS = 16_000_000  # longest string or list a template may build, and most output per render
INT_BITS = 100_000  # widest integer a template may compute with (a 64-bit id needs 64)
ITEMS = 1_000_000  # most items a filter that loops in C over Python objects (sort, unique, ...) may take
MEMORY = int(float(os.environ.get("EVALSUITE_RENDER_MEMORY_MB") or 1024) * 2**20)  # resident growth per render
CHECK_EVERY = 0.002  # seconds between two checks of the clock's deadline and of the memory
LOOP_HOOK = "__evalsuite_loop"
CONCAT_HOOK = "__evalsuite_concat"
PAD_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
_DIGITS = re.compile(r"\d+")
_N = TypeVar("_N", bound=nodes.Node)
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{|%[-#0 +]*\*|%[-#0 +]*\d*\.\*")
_SEQUENCES = (str, list, tuple, bytes)


class OverBudget(Exception):
    """Raised inside a render that went over its budget; ``render`` turns it into one clear error."""


class _State(threading.local):
    deadline = float("inf")
    seconds = SECONDS
    next_check = float("inf")  # the next time a checkpoint looks at the deadline and the memory
    resident: int | None = None  # resident bytes at the render's first memory check


_state = _State()
_monotonic = time.monotonic


def arm() -> float:
    """Start the budget of one render; returns what :func:`disarm` restores (a render inside a render keeps the
    outer budget)."""
    outer = _state.deadline
    if outer == float("inf"):
        now = _monotonic()
        _state.seconds = SECONDS
        _state.deadline = now + SECONDS
        # Resident memory is read at the first periodic check, not here: reading it costs more than a short render.
        _state.resident = None
        _state.next_check = now + CHECK_EVERY
    return outer


def disarm(outer: float) -> None:
    _state.deadline = outer
    if outer == float("inf"):
        _state.next_check = float("inf")


def check_time() -> None:
    if _monotonic() > _state.deadline:
        raise OverBudget(f"ran longer than {_state.seconds:g} s, the render budget (a loop that never ends?)")


def checkpoint() -> None:
    """Called between operations (loop iterations, calls, filters): every :data:`CHECK_EVERY` seconds, the
    deadline and the memory."""
    if _monotonic() > _state.next_check:
        _periodic()


def _periodic() -> None:
    check_time()
    used = _resident()
    if used is not None:
        if _state.resident is None:
            _state.resident = used
        elif used - _state.resident > MEMORY:
            raise OverBudget(f"grew the process's memory by {(used - _state.resident) / 2**20:,.0f} MiB, over the "
                             f"template memory limit of {MEMORY / 2**20:,.0f} MiB")
    _state.next_check = _monotonic() + CHECK_EVERY


def _resident() -> int | None:
    """This process's resident memory in bytes (Linux); None where /proc is not there (the other limits remain)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def check_size(n: int, what: str = "a string or list") -> None:
    if n > CHARS:
        raise OverBudget(f"would build {what} of length {n:,}, over the render budget of {CHARS:,}")


def check_items(value: Any, what: str) -> None:
    """A filter that loops in C over Python objects (sorting, grouping, pretty-printing) takes at most ITEMS."""
    n = len(value) if isinstance(value, (str, list, tuple, dict, bytes)) else 0
    if n > ITEMS:
        raise OverBudget(f"would {what} {n:,} items, over the render budget of {ITEMS:,}")


def check_ints(*values: Any) -> None:
    for v in values:
        if isinstance(v, int) and v.bit_length() > INT_BITS:
            _wide(v.bit_length())


def _wide(bits: int) -> None:
    raise OverBudget(f"would compute with an integer of {bits:,} bits, over the render budget of {INT_BITS:,}")


def _length(x: Any) -> int:
    return len(x) if isinstance(x, (str, list, tuple, bytes)) else 0


def text_size(value: Any, limit: int = CHARS) -> int:
    """About how long ``str(value)`` is, found without building it: strings by length (a repr's escapes counted
    when not printable), numbers by digits, containers by walking them. The walk stops once past ``limit`` (every
    item adds at least one character, so it takes at most ``limit`` steps, and a list too long to fit is refused
    from its length alone)."""
    if isinstance(value, str):
        return len(value)
    total, stack = 0, [value]
    while stack and total <= limit:
        x = stack.pop()
        if isinstance(x, str):
            total += len(x) + 2 if len(x) < 4096 or x.isprintable() else 10 * len(x) + 2
        elif isinstance(x, (list, tuple, set, frozenset)):
            total += 2 + 3 * len(x)  # brackets, and per item a comma, a space and at least one character
            if total <= limit:
                stack.extend(x)
        elif isinstance(x, dict):
            total += 2 + 6 * len(x)
            if total <= limit:
                stack.extend(x.keys())
                stack.extend(x.values())
        elif isinstance(x, int) and not isinstance(x, bool):
            total += x.bit_length() // 3 + 1
        elif isinstance(x, bytes):
            total += 4 * len(x) + 3
        else:
            total += 32
            if isinstance(x, Namespace):  # its repr shows its attributes
                stack.append(object.__getattribute__(x, "_Namespace__attrs"))
    return total


def check_text(value: Any, what: str = "a text") -> None:
    """Before ``str(value)``: a list or dict whose text would go over the size budget is refused."""
    if not isinstance(value, str) and value is not None:
        check_size(text_size(value), what)


def finalize(value: Any) -> Any:
    """Every ``{{ expression }}`` passes here before jinja calls ``str`` on it."""
    if type(value) is not str:
        check_text(value, "an output")
    return value


def join_output(blocks: Iterable[str]) -> str:
    """The render's output blocks joined, stopped once their total goes over the size budget."""
    parts = []
    total = 0
    for block in blocks:
        total += len(block)
        if total > CHARS:
            check_size(total, "an output")
        parts.append(block)
    return "".join(parts)


def loop(iterable: Any) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable (and the generators filters return): a checkpoint per iteration."""
    state = _state
    check_time()
    for item in iterable:
        if _monotonic() > state.next_check:
            _periodic()
        yield item


def concat(*parts: Any) -> str:
    """``a ~ b ~ c`` (jinja's ``str_join``, autoescape being off) with the size checked before joining."""
    for p in parts:
        check_text(p)
    strings = [str(p) for p in parts]
    check_size(sum(len(s) for s in strings))
    return "".join(strings)


def add(left: Any, right: Any) -> Any:
    """``left + right`` (the commonest operator in templates, so the quick path comes first)."""
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        if len(left) + len(right) > CHARS:
            check_size(len(left) + len(right))
    elif isinstance(left, int) and isinstance(right, int):
        check_ints(left, right)
    return left + right


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Before ``left OPERATOR right`` runs (one C call): the size of what it builds, the width of the integers it
    computes with."""
    ints = isinstance(left, int) and isinstance(right, int)
    if ints:
        check_ints(left, right)
    if operator == "*":
        if ints and left.bit_length() + right.bit_length() > INT_BITS:
            _wide(left.bit_length() + right.bit_length())
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                check_size(len(seq) * n)
    elif operator == "**":
        if ints and abs(left) > 1 and right > 0 and left.bit_length() * right > INT_BITS:
            _wide(left.bit_length() * right)
    elif operator == "%" and isinstance(left, str):
        _check_format(left, right if isinstance(right, tuple) else (right,))


def _check_format(spec: str, args: Iterable[Any]) -> None:
    """printf-style and ``str.format``: a width over the budget, written or passed as an argument, and the text of
    each argument (``'%s' % [L, L]`` writes both lists out)."""
    args = list(args)
    check_size(len(spec) + sum(text_size(a) for a in args), "a formatted string")
    if any(len(d) > 7 and int(d) > CHARS for d in _DIGITS.findall(spec)):
        check_size(CHARS + 1, "a formatted field")
    if _NESTED_SPEC.search(spec):
        for a in args:
            if isinstance(a, int) and a > CHARS:
                check_size(a, "a formatted field")


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Before a call from template code: the time budget, and the size of what a string method would build.
    Returns the arguments to call with (an iterable given to ``join`` is materialised once, to measure it)."""
    if _monotonic() > _state.next_check:
        _periodic()
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, (str, bytes)):
        return args
    name = getattr(obj, "__name__", "")
    if name in PAD_METHODS and args and isinstance(args[0], int):
        check_size(args[0])
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            check_size(len(owner) * size)
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, (str, bytes)) for a in args[:2]):
        check_size(_replaced(owner, args[0], args[1]))
    elif name == "join" and args:
        items = list(args[0])
        check_size(sum(_length(x) for x in items) + len(owner) * len(items))
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        widest = max((_length(v) for v in args[0].values()), default=1)
        check_size(len(owner) * max(1, widest))
    return args


def _replaced(s: Any, old: Any, new: Any) -> int:
    count = len(s) + 1 if not old else s.count(old)
    return len(s) + count * max(0, len(new) - len(old))


def check_format_call(owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_format(owner, (*args, *kwargs.values()))


def guard_ast(ast: _N) -> _N:
    """Route every ``{% for %}`` iterable through :func:`loop` and every ``~`` through :func:`concat` (in place,
    children first)."""
    for name in ast.fields:
        value = getattr(ast, name, None)
        if isinstance(value, nodes.Node):
            setattr(ast, name, _hooked(guard_ast(value)))
        elif isinstance(value, list):
            value[:] = [_hooked(guard_ast(v)) if isinstance(v, nodes.Node) else v for v in value]
    return ast


def _hooked(node: nodes.Node) -> nodes.Node:
    if isinstance(node, nodes.For):
        node.iter = _hook_call(LOOP_HOOK, [node.iter], node.iter)
    elif isinstance(node, nodes.Concat):
        return _hook_call(CONCAT_HOOK, list(node.nodes), node)
    return node


def _hook_call(name: str, args: list[Any], at: nodes.Node) -> nodes.Call:
    call = nodes.Call(nodes.Name(name, "load"), args, [], None, None)
    call.set_lineno(at.lineno or 1)
    return call
