"""Registries: name -> implementation, explicit, lazy and loud (trainer backends, scorers).

Built-ins are a literal name -> ``"module:attr"`` map; installed packages add theirs through an entry-point group;
code may register objects directly. Nothing is imported until a name is asked for. An unknown name, a name claimed
twice, or a target that cannot be imported is one :class:`EvalsuiteError` that lists the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from evalsuite.errors import EvalsuiteError


class Registry:
    """One kind of pluggable thing (``kind`` names it in errors: "scorer", "trainer backend")."""

    def __init__(self, kind: str, builtin: Mapping[str, str], group: str) -> None:
        self.kind = kind
        self.builtin = dict(builtin)
        self.group = group
        self._code: dict[str, Any] = {}

    def known(self) -> dict[str, str]:
        """name -> where it comes from ("module:attr"); an entry point that reuses a name is an error."""
        names = dict(self.builtin)
        for ep in entry_points(group=self.group):
            if ep.name in names and names[ep.name] != ep.value:
                raise EvalsuiteError(f"{self.kind} {ep.name!r} registered twice: {names[ep.name]} and {ep.value}")
            names[ep.name] = ep.value
        for name, obj in self._code.items():
            names.setdefault(name, f"{obj.__module__}:{obj.__qualname__}")
        return names

    def register(self, name: str, obj: Any) -> None:
        """Register ``obj`` under ``name`` from code; registering the same object again is a no-op."""
        if name in self.known() and self._code.get(name) is not obj:
            raise EvalsuiteError(f"{self.kind} {name!r} is already registered")
        self._code[name] = obj

    def load(self, name: str) -> Any:
        """The object registered under ``name``, imported on first use."""
        if name in self._code:
            return self._code[name]
        known = self.known()
        if name not in known:
            raise EvalsuiteError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(known))}")
        module, _, attr = known[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise EvalsuiteError(f"{self.kind} {name!r} ({known[name]}) cannot be loaded: {e}") from None
