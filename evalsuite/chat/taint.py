"""Static taint analysis of a chat template: where can message *content* influence the output other than by being
copied into it?

Why: rendering every row through jinja (three renders per row to find the turn boundaries) is the slow part of the
lint. If a template only ever *copies* a message's content into the output (possibly through ``trim`` / ``strip()``),
tests only its type or emptiness, and never branches on its value, then the render of a conversation is a fixed
interleaving of literal text and (stripped) contents, decided by the role sequence alone. The encoder then learns
that interleaving once per role sequence with sentinel contents and splices each row's contents in
(``evalsuite.chat.layout``).

The analysis is flow-insensitive over variables but path-precise at run time: every expression that uses content in
any other way (``content|length``, ``'</think>' in content``, ``message == other``, ``content|tojson`` ...) is wrapped
in a marker call. The layout is learned with the *instrumented* template, and a role sequence whose renders fire a
marker falls back to rendering every row in full. So a Llama-3.1 template is spliced for user/assistant data (its
``tojson`` sits in the tool branch that never runs) while Qwen3 (which splits content on ``</think>``) is not.

Taint kinds, ordered: CLEAN (does not depend on content) < RAW (exactly a content string) < STR (a string made of
content and literals) < MSG (a message, or a list of them). ``Const in message`` (key membership), type tests and
truthiness of RAW/MSG are content-independent *given* the role sequence and which contents are empty, which is the
key layouts are learned under.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2.nodes as nodes

CLEAN, RAW, STR, MSG = 0, 1, 2, 3
MARKER = "__evalsuite_content_use"

TYPE_TESTS = frozenset({"defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number",
                        "boolean", "false", "true", "callable", "integer", "float"})
STRIP_METHODS = frozenset({"strip", "lstrip", "rstrip"})
IDENTITY_FILTERS = frozenset({"string", "safe"})  # autoescape is off: both return the string unchanged
MSG_FILTERS_KEEP = frozenset({"list", "reverse", "first", "last"})
MSG_FILTERS_CLEAN = frozenset({"length", "count"})


class _Analysis:
    def __init__(self) -> None:
        self.env: dict[str, int] = {"messages": MSG}
        self.unsafe: dict[int, nodes.Node] = {}
        self.changed = False

    # -- variables -------------------------------------------------------------------------------------------
    def _bind(self, name: str, kind: int) -> None:
        if kind > self.env.get(name, CLEAN):
            self.env[name] = kind
            self.changed = True

    def _mark(self, node: nodes.Node) -> int:
        self.unsafe[id(node)] = node
        return CLEAN  # once marked, a use that runs disables splicing, so what it yields is irrelevant

    # -- expressions ----------------------------------------------------------------------------------------
    def value(self, node: Any) -> int:
        """Taint of an expression used as a value (copied somewhere)."""
        if node is None:
            return CLEAN
        method = getattr(self, f"_v_{type(node).__name__}", None)
        if method is not None:
            return int(method(node))
        kinds = [self.value(child) for child in node.iter_child_nodes()]
        return self._mark(node) if any(kinds) else CLEAN

    def truth(self, node: Any) -> None:
        """An expression whose truthiness decides control flow."""
        if isinstance(node, (nodes.And, nodes.Or)):
            self.truth(node.left)
            self.truth(node.right)
            return
        if isinstance(node, nodes.Not):
            self.truth(node.node)
            return
        if self.value(node) == STR:
            self._mark(node)  # the emptiness of a stripped or concatenated string is not part of the layout key

    def _v_Const(self, node: nodes.Const) -> int:
        return CLEAN

    def _v_TemplateData(self, node: nodes.TemplateData) -> int:
        return CLEAN

    def _v_Name(self, node: nodes.Name) -> int:
        return self.env.get(node.name, CLEAN)

    def _v_Getattr(self, node: nodes.Getattr) -> int:
        if isinstance(node.node, nodes.Name) and node.node.name == "loop" and node.attr in ("previtem", "nextitem"):
            return MSG
        if isinstance(node.node, nodes.Name):
            qualified = f"{node.node.name}.{node.attr}"
            if qualified in self.env:
                return self.env[qualified]
        return self._member(node, self.value(node.node), node.attr)

    def _v_Getitem(self, node: nodes.Getitem) -> int:
        base = self.value(node.node)
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return self._member(node, base, node.arg.value)
        if self.value(node.arg):
            return self._mark(node)
        if base in (RAW, STR):
            return self._mark(node)  # content[0], content[:-1]
        return base  # messages[i], messages[1:] stay MSG; clean stays clean

    def _member(self, node: nodes.Expr, base: int, key: str) -> int:
        if base == MSG:
            return RAW if key == "content" else CLEAN  # role (part of the key) or keys our messages do not have
        if base in (RAW, STR):
            return self._mark(node)
        return CLEAN

    def _v_Slice(self, node: nodes.Slice) -> int:
        return self._mark(node) if any(self.value(c) for c in node.iter_child_nodes()) else CLEAN

    def _v_Call(self, node: nodes.Call) -> int:
        args = [*node.args, *(k.value for k in node.kwargs), node.dyn_args, node.dyn_kwargs]
        arg_kinds = [self.value(a) for a in args if a is not None]
        callee = node.node
        if isinstance(callee, nodes.Getattr):
            owner = self.value(callee.node)
            if owner in (RAW, STR):
                ok = callee.attr in STRIP_METHODS and not any(a is not None for a in args)
                return STR if ok else self._mark(node)
            if owner == MSG:
                if callee.attr == "get" and len(node.args) == 1 and isinstance(node.args[0], nodes.Const):
                    return RAW if node.args[0].value == "content" else CLEAN
                return CLEAN if callee.attr == "keys" and not node.args else self._mark(node)
        elif self.value(callee):
            return self._mark(node)
        return self._mark(node) if any(arg_kinds) else CLEAN

    def _v_Filter(self, node: nodes.Filter) -> int:
        base = self.value(node.node)
        args = [*node.args, *(k.value for k in node.kwargs)]
        if any(self.value(a) for a in args):
            return self._mark(node)
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return self._mark(node) if base else CLEAN
        if base in (RAW, STR):
            if node.name == "trim" and not args:
                return STR
            return base if node.name in IDENTITY_FILTERS else self._mark(node)
        if base == MSG:
            if node.name in MSG_FILTERS_KEEP:
                return MSG
            if node.name in MSG_FILTERS_CLEAN:
                return CLEAN
            if node.name in ("selectattr", "rejectattr") and node.args and isinstance(node.args[0], nodes.Const) \
                    and node.args[0].value != "content" and not node.kwargs:
                return MSG
            if node.name == "map" and any(k.key == "attribute" and isinstance(k.value, nodes.Const)
                                          and k.value.value == "role" for k in node.kwargs):
                return CLEAN
            return self._mark(node)
        return CLEAN

    def _v_Test(self, node: nodes.Test) -> int:
        base = self.value(node.node)
        args = [*node.args, *(k.value for k in node.kwargs)]
        if any(self.value(a) for a in args):
            return self._mark(node)
        if base and node.name not in TYPE_TESTS:
            return self._mark(node)
        return CLEAN

    def _v_Compare(self, node: nodes.Compare) -> int:
        operands = [node.expr, *(op.expr for op in node.ops)]
        kinds = [self.value(e) for e in operands]
        if not any(kinds):
            return CLEAN
        if len(node.ops) == 1:
            left, right = operands
            op = node.ops[0].op
            if op in ("in", "notin") and isinstance(left, nodes.Const) and kinds == [CLEAN, MSG]:
                return CLEAN  # 'tool_calls' in message: key membership
            if op in ("eq", "ne") and kinds[0] in (RAW, STR) and _type_only_const(right):
                return CLEAN
            if op in ("eq", "ne") and kinds[1] in (RAW, STR) and _type_only_const(left):
                return CLEAN
            if op in ("eq", "ne") and RAW in kinds and _empty_str(left if kinds[1] == RAW else right):
                return CLEAN  # content == '': emptiness is in the layout key
        return self._mark(node)

    def _v_Concat(self, node: nodes.Concat) -> int:
        kinds = [self.value(c) for c in node.nodes]
        if MSG in kinds:
            return self._mark(node)
        return STR if any(kinds) else CLEAN

    def _v_Add(self, node: nodes.Add) -> int:
        kinds = [self.value(node.left), self.value(node.right)]
        if MSG in kinds:
            return self._mark(node)
        return STR if any(kinds) else CLEAN

    def _v_And(self, node: nodes.And) -> int:
        return self._logic(node)

    def _v_Or(self, node: nodes.Or) -> int:
        return self._logic(node)

    def _logic(self, node: nodes.BinExpr) -> int:
        self.truth(node.left)
        return max(self.value(node.left), self.value(node.right))

    def _v_Not(self, node: nodes.Not) -> int:
        self.truth(node.node)
        return CLEAN

    def _v_CondExpr(self, node: nodes.CondExpr) -> int:
        if node.test is not None:
            self.truth(node.test)
        return max(self.value(node.expr1), self.value(node.expr2))

    def _v_MarkSafe(self, node: nodes.MarkSafe) -> int:
        return self.value(node.expr)

    def _v_MarkSafeIfAutoescape(self, node: nodes.MarkSafeIfAutoescape) -> int:
        return self.value(node.expr)

    # -- statements -----------------------------------------------------------------------------------------
    def statements(self, body: list[Any], filtered: bool = False) -> None:
        for stmt in body:
            self.statement(stmt, filtered)

    def statement(self, node: Any, filtered: bool = False) -> None:
        """``filtered``: inside a ``{% filter %}`` or ``{% set x %}...{% endset %}`` with a filter, where any content
        that is output goes through that filter."""
        method = getattr(self, f"_s_{type(node).__name__}", None)
        if method is not None:
            method(node, filtered)
            return
        if isinstance(node, (nodes.Macro, nodes.Scope, nodes.ScopedEvalContextModifier)):
            self.statements(node.body, filtered)
            return
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Stmt):
                self.statement(child, filtered)
            elif isinstance(child, nodes.Expr) and self.value(child):
                self._mark(child)

    def _s_Output(self, node: nodes.Output, filtered: bool) -> None:
        for child in node.nodes:
            kind = self.value(child)
            if kind == MSG or (kind and filtered):
                self._mark(child)

    def _s_Assign(self, node: nodes.Assign, filtered: bool) -> None:
        self._assign(node.target, self.value(node.node))

    def _s_AssignBlock(self, node: nodes.AssignBlock, filtered: bool) -> None:
        self.statements(node.body, filtered=filtered or node.filter is not None)
        self._assign(node.target, STR if self._outputs_taint(node.body) else CLEAN)

    def _s_For(self, node: nodes.For, filtered: bool) -> None:
        kind = self.value(node.iter)
        if kind in (RAW, STR):
            self._mark(node.iter)
            kind = CLEAN
        self._assign(node.target, kind)
        if node.test is not None:
            self.truth(node.test)
        self.statements(node.body, filtered)
        self.statements(node.else_, filtered)

    def _s_If(self, node: nodes.If, filtered: bool) -> None:
        self.truth(node.test)
        self.statements(node.body, filtered)
        for elif_ in node.elif_:
            self.statement(elif_, filtered)
        self.statements(node.else_, filtered)

    def _s_FilterBlock(self, node: nodes.FilterBlock, filtered: bool) -> None:
        self.statements(node.body, filtered=True)

    def _s_CallBlock(self, node: nodes.CallBlock, filtered: bool) -> None:
        self.value(node.call)
        self.statements(node.body, filtered)

    def _s_With(self, node: nodes.With, filtered: bool) -> None:
        for target, value in zip(node.targets, node.values):
            self._assign(target, self.value(value))
        self.statements(node.body, filtered)

    def _assign(self, target: Any, kind: int) -> None:
        if isinstance(target, nodes.Name):
            self._bind(target.name, kind)
        elif isinstance(target, nodes.NSRef):
            self._bind(f"{target.name}.{target.attr}", kind)
        elif isinstance(target, (nodes.Tuple, nodes.List)):
            for item in target.items:
                self._assign(item, kind)

    def _outputs_taint(self, body: list[Any]) -> bool:
        return any(isinstance(node, nodes.Output) and any(self.value(c) for c in node.nodes) for node in _walk(body))


def _walk(body: list[Any]) -> Iterator[Any]:
    for node in body:
        yield node
        yield from node.find_all(nodes.Node)


def _type_only_const(node: Any) -> bool:
    return isinstance(node, nodes.Const) and (node.value is None or isinstance(node.value, (bool, int, float)))


def _empty_str(node: Any) -> bool:
    return isinstance(node, nodes.Const) and node.value == ""


def find_content_uses(ast: nodes.Template) -> dict[int, nodes.Node]:
    """The expression nodes (by id) that use message content other than by copying it into the output."""
    analysis = _Analysis()
    for _ in range(12):  # the environment only grows, so this reaches a fixpoint quickly
        analysis.changed = False
        analysis.unsafe = {}
        analysis.statements(ast.body)
        if not analysis.changed:
            break
    return analysis.unsafe


def instrument(ast: nodes.Template, uses: dict[int, nodes.Node]) -> int:
    """Wrap every unsafe use ``E`` as ``MARKER(E)`` in place; returns how many were wrapped."""
    count = 0

    def wrap(node: nodes.Node) -> None:
        nonlocal count
        for name in node.fields:
            value = getattr(node, name, None)
            if isinstance(value, nodes.Node):
                wrap(value)
                if id(value) in uses:
                    setattr(node, name, _marker_call(value))
                    count += 1
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, nodes.Node):
                        wrap(item)
                        if id(item) in uses:
                            value[i] = _marker_call(item)
                            count += 1

    wrap(ast)
    return count


def _marker_call(expr: nodes.Node) -> nodes.Call:
    assert isinstance(expr, nodes.Expr)
    call = nodes.Call(nodes.Name(MARKER, "load"), [expr], [], None, None)
    call.set_lineno(expr.lineno or 1)
    return call


def referenced_names(ast: nodes.Template) -> frozenset[str]:
    """Every attribute name and string constant of a template: a message key outside this set can never change its
    render (conservative: a name counts wherever it appears)."""
    names = {n.attr for n in ast.find_all(nodes.Getattr)}
    names |= {n.value for n in ast.find_all(nodes.Const) if isinstance(n.value, str)}
    return frozenset(names)
