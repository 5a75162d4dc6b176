"""The render budget in front of jinja's filters (see :mod:`evalsuite.chat.budget` for the budget itself).

Every filter of the sandbox is wrapped once, when the environment is made:

- the wrapper is a checkpoint (time and memory), and a generator a filter returns (``map``, ``select``, ``items``)
  yields through one, so ``range(99999)|map('upper')|list`` is interrupted like a loop;
- it is marked ``pass_context``, which jinja never folds into a constant at compile time: a filter on constants
  (``"x"|center(15000000)``) runs inside the render's budget, never in the compiler;
- what one filter would build is checked before it runs (:data:`_CHECKS`): the text of a list or dict it turns into a
  string, the padding, replacing and escaping, ``sum`` (re-implemented as a checked loop), ``batch``/``slice`` counts,
  and the number of items the filters that loop in C over Python objects take (:data:`HEAVY`).
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import jinja2

from evalsuite.chat import budget
from evalsuite.chat.budget import CHARS, OverBudget, check_items, check_size, check_text, text_size

# Filters that turn their value into text first (jinja's ``soft_str``/``str``/``Markup``): a list or dict value is
# measured before that.
TEXT = frozenset({"capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "upper",
                  "replace", "safe", "striptags", "string", "title", "trim", "truncate", "urlize", "wordcount",
                  "wordwrap", "pprint", "urlencode", "xmlattr"})
# Filters that loop in C (or slow Python) over every item or word: their input is capped at ITEMS.
HEAVY = {"sort": "sort", "dictsort": "sort", "unique": "deduplicate", "groupby": "group", "min": "compare",
         "max": "compare", "pprint": "pretty-print", "wordwrap": "wrap", "wordcount": "count the words of",
         "urlize": "scan", "striptags": "scan", "xmlattr": "write", "urlencode": "encode", "batch": "batch",
         "slice": "slice"}
_ESCAPED = {"&": 4, "<": 3, ">": 3, '"': 4, "'": 4}  # extra characters markupsafe writes for each


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _center(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width", 80)
    if isinstance(width, int):
        check_size(width)


def _indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width", 4)
    text = str(value)
    per_line = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
    check_size(len(text) + (text.count("\n") + 1) * per_line)


def _replace(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    old, new = _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new")
    if old is not None and new is not None:
        check_size(budget._replaced(str(value), str(old), str(new)))


def _join(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    items = list(value)
    sep = _arg(args, kwargs, 0, "d", "")
    check_size(sum(text_size(x) for x in items) + len(str(sep)) * len(items))
    return items


def _format(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if isinstance(value, str):
        budget._check_format(value, (*args, *kwargs.values()))


def _escape(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = value if isinstance(value, str) else None
    if text is not None and len(text) * 5 > CHARS:
        check_size(len(text) + sum(text.count(c) * n for c, n in _ESCAPED.items()), "an escaped string")


def _tojson(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    indent = _arg(args, kwargs, 1, "indent")
    size = text_size(value)
    check_size(size * (1 + indent) if isinstance(indent, int) and indent > 0 else size, "a JSON text")


def _count(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    n = _arg(args, kwargs, 0, "linecount" if "linecount" in kwargs else "slices")
    if isinstance(n, int) and n > budget.ITEMS:
        raise OverBudget(f"would make {n:,} groups, over the render budget of {budget.ITEMS:,}")


_Check = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]
_CHECKS: dict[str, _Check] = {"center": _center, "indent": _indent, "replace": _replace, "join": _join,
                              "format": _format, "e": _escape, "escape": _escape, "forceescape": _escape,
                              "tojson": _tojson, "batch": _count, "slice": _count}


def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    """jinja's ``sum`` as a loop of checked additions: ``[L, L, L, L]|sum(start=[])`` stops at the addition that
    would go over the size budget, and a long sum stops at the deadline."""
    if attribute is not None:
        from jinja2.filters import make_attrgetter

        iterable = map(make_attrgetter(environment, attribute), iterable)
    total = start
    for x in budget.loop(iterable):
        total = budget.add(total, x)
    return total


def guard(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` behind the checks for ``name``, as a ``pass_context`` filter (written for speed: real templates call
    ``trim`` or ``tojson`` per message)."""
    passed = getattr(func, "jinja_pass_arg", None)
    kind = passed.name if passed is not None else None
    check = _CHECKS.get(name)
    heavy = HEAVY.get(name)
    text = name in TEXT
    state, clock, generator = budget._state, budget._monotonic, types.GeneratorType

    @jinja2.pass_context
    def guarded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if clock() > state.next_check:
            budget._periodic()
        if text and type(value) is not str:
            check_text(value)
        if heavy:
            check_items(value, heavy)
        if check is not None and (materialised := check(value, args, kwargs)) is not None:
            value = materialised
        if kind is None:
            out = func(value, *args, **kwargs)
        else:
            lead = (context if kind == "context" else context.eval_ctx if kind == "eval_context"
                    else context.environment)
            out = func(lead, value, *args, **kwargs)
        return budget.loop(out) if type(out) is generator else out

    guarded.__name__ = guarded.__qualname__ = f"guarded_{name}"
    guarded.__doc__ = func.__doc__
    return guarded


def guard_filters(filters: dict[str, Callable[..., Any]]) -> None:
    filters["sum"] = jinja2.pass_environment(_sum)
    for name, func in list(filters.items()):
        filters[name] = guard(name, func)


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:  # jinja's parameter names
    """jinja's ``lipsum`` with its loops bounded (it is a global of every jinja environment)."""
    from jinja2.utils import generate_lorem_ipsum

    for value in (n, min, max):
        if isinstance(value, int):
            check_size(value * 1000, "lorem ipsum")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
           sort_keys: bool = False) -> str:
    # jinja's own tojson HTML-escapes (&, <, >), which would change what the model is trained on.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt: str) -> str:
    if len(fmt) > 1000:  # each directive can write dozens of characters in one C call; real formats are short
        raise OverBudget(f"strftime_now: a format of {len(fmt):,} characters, over the render budget of 1,000")
    return datetime.now().strftime(fmt)
