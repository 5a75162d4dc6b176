"""The render budget: a chat template from the hub is untrusted code, so one render gets a time budget and a size
budget, and ends in one clear error when it goes over either, instead of hanging the lint, the trainer or the probe.

jinja's sandbox stops escapes but not work: ``{% for i in range(99999) %}{% for j in range(99999) %}`` runs for hours
and ``'x' * 3000000000`` asks for 3 GB at once. Time is checked where a template can spend it without end: every
``{% for %}`` iteration and every call (macros, methods), through the hooks :func:`guard_ast` plants and the sandbox's
``call``. Size is checked *before* an allocation can happen, on the operations that grow strings and lists: ``*``,
``**``, ``+``, ``%`` and ``~``, the padding/replacing/joining string methods and filters, and the output as it streams.
A legitimate template never comes near either limit (a render takes milliseconds and writes one conversation).
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import jinja2.nodes as nodes

SECONDS = float(os.environ.get("EVALSUITE_RENDER_SECONDS") or 10.0)  # per render
CHARS = 16_000_000  # longest string or list a template may build, and most output per render
LOOP_HOOK = "__evalsuite_loop"
CONCAT_HOOK = "__evalsuite_concat"
PAD_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
_DIGITS = re.compile(r"\d+")
_N = TypeVar("_N", bound=nodes.Node)
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{|%[-#0 +]*\*|%[-#0 +]*\d*\.\*")


class OverBudget(Exception):
    """Raised inside a render that went over its budget; ``render`` turns it into one clear error."""


class _State(threading.local):
    deadline = float("inf")
    seconds = SECONDS


_state = _State()
_monotonic = time.monotonic


def arm() -> float:
    """Start the time budget of one render; returns what :func:`disarm` restores (a render inside a render keeps
    the outer deadline)."""
    outer = _state.deadline
    if outer == float("inf"):
        _state.seconds = SECONDS
        _state.deadline = _monotonic() + SECONDS
    return outer


def disarm(outer: float) -> None:
    _state.deadline = outer


def check_time() -> None:
    if _monotonic() > _state.deadline:
        raise OverBudget(f"ran longer than {_state.seconds:g} s, the render budget (a loop that never ends?)")


def check_size(n: int, what: str = "a string or list") -> None:
    if n > CHARS:
        raise OverBudget(f"would build {what} of length {n:,}, over the render budget of {CHARS:,}")


def _length(x: Any) -> int:
    return len(x) if isinstance(x, (str, list, tuple)) else 0


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
    """Wraps every ``{% for %}`` iterable: the time budget is checked per iteration."""
    state = _state
    check_time()
    for item in iterable:
        if _monotonic() > state.deadline:
            check_time()
        yield item


def concat(*parts: Any) -> str:
    """``a ~ b ~ c`` (jinja's ``str_join``, autoescape being off) with the size checked before joining."""
    strings = [str(p) for p in parts]
    check_size(sum(len(s) for s in strings))
    return "".join(strings)


_SEQUENCES = (str, list, tuple)


def add(left: Any, right: Any) -> Any:
    """``left + right`` (the commonest operator in templates, so the quick path comes first)."""
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES) and len(left) + len(right) > CHARS:
        check_size(len(left) + len(right))
    return left + right


def check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                check_size(len(seq) * n)
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            check_size(left.bit_length() * right // 8, "a number of bytes")
    elif operator == "%" and isinstance(left, str):
        _check_format(left, right if isinstance(right, tuple) else (right,))


def _check_format(spec: str, args: Iterable[Any]) -> None:
    """printf-style and ``str.format`` widths: a width over the budget, written or passed as an argument."""
    if any(len(d) > 7 and int(d) > CHARS for d in _DIGITS.findall(spec)):
        check_size(CHARS + 1, "a formatted field")
    if _NESTED_SPEC.search(spec):
        for a in args:
            if isinstance(a, int) and a > CHARS:
                check_size(a, "a formatted field")


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Before a call from template code: the time budget, and the size of what a string method would build.
    Returns the arguments to call with (an iterable given to ``join`` is materialised once, to measure it)."""
    if _monotonic() > _state.deadline:
        check_time()
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(obj, "__name__", "")
    if name in PAD_METHODS and args and isinstance(args[0], int):
        check_size(args[0])
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            check_size(len(owner) * size)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        check_size(_replaced(owner, args[0], args[1]))
    elif name == "join" and args:
        items = list(args[0])
        check_size(sum(_length(x) for x in items) + len(owner) * len(items))
        return (items, *args[1:])
    return args


def _replaced(s: str, old: str, new: str) -> int:
    count = len(s) + 1 if not old else s.count(old)
    return len(s) + count * max(0, len(new) - len(old))


def check_format_call(owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_format(owner, (*args, *kwargs.values()))


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A size check in front of a jinja filter that can grow a string."""
    passes_context = hasattr(func, "jinja_pass_arg")

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value, rest = (args[1], args[2:]) if passes_context else (args[0], args[1:])
        if name == "center" and rest and isinstance(rest[0], int):
            check_size(rest[0])
        elif name == "indent":
            width = rest[0] if rest else kwargs.get("width", 4)
            lines = str(value).count("\n") + 1
            check_size(len(str(value)) + lines * (width if isinstance(width, int) else _length(width)))
        elif name == "replace" and len(rest) >= 2:
            check_size(_replaced(str(value), str(rest[0]), str(rest[1])))
        elif name == "join":
            items = list(value)
            sep = rest[0] if rest else kwargs.get("d", "")
            check_size(sum(_length(x) for x in items) + _length(sep) * len(items))
            args = (args[0], items, *rest) if passes_context else (items, *rest)
        elif name == "format" and isinstance(value, str):
            _check_format(value, (*rest, *kwargs.values()))
        return func(*args, **kwargs)

    return guarded


def guard_filters(filters: dict[str, Callable[..., Any]]) -> None:
    for name in ("center", "indent", "replace", "join", "format"):
        filters[name] = _guarded_filter(name, filters[name])


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:  # jinja's parameter names
    """jinja's ``lipsum`` with its loops bounded (it is a global of every jinja environment)."""
    from jinja2.utils import generate_lorem_ipsum

    for value in (n, min, max):
        if isinstance(value, int):
            check_size(value * 1000, "lorem ipsum")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


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
