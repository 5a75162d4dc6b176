"""Structural rules: one exemplar render per shape (``shapes.ShapeFacts``), never per row.

Each function is a pure predicate over the :class:`~evalsuite.lint.shapes.Context` and returns findings; the rows a
finding counts are the rows of the shapes it holds for.
"""

from __future__ import annotations

import re
from collections import defaultdict

from evalsuite.chat.template import TemplateRaised, TemplateRefused
from evalsuite.lint.control_tokens import SHAPES, XML, control_strings, judge
from evalsuite.lint.findings import Finding
from evalsuite.lint.shapes import Context, ShapeFacts, has_role_word, turn_glue

WORD = re.compile(r"[^\W\d_]{3,}")
ROLE_NAMES = {"system", "user", "assistant", "model", "tool", "ipython", "human", "gpt", "function", "developer"}
CANONICAL_ROLES = ("system", "user", "assistant")


def _roles(facts: ShapeFacts) -> str:
    return facts.key.roles


def _rows(shapes: list[ShapeFacts]) -> list[int]:
    return [i for s in shapes for i in s.rows]


def _usable(ctx: Context) -> list[ShapeFacts]:
    return [s for s in ctx.shapes.values() if s.cut is not None]


def template_error(ctx: Context) -> list[Finding]:
    groups: dict[str, list[ShapeFacts]] = defaultdict(list)
    for s in ctx.shapes.values():
        if isinstance(s.error, TemplateRefused):
            groups[str(s.error)].append(s)
    out = []
    for message, shapes in groups.items():
        rows = _rows(shapes)
        seqs = ", ".join(sorted({_roles(s) for s in shapes})[:3])
        out.append(Finding("template-error", f"{message} (role sequence {seqs}); the trainer stops on these rows",
                           count=len(rows), rows=rows[:3]))
    return out


def role_not_in_template(ctx: Context) -> list[Finding]:
    dropped: dict[str, list[int]] = defaultdict(list)
    for s in _usable(ctx):
        for i, turn in enumerate(s.key.turns):
            if turn.nonempty and "content" in s.missing(i):
                dropped[turn.role] += s.rows
    return [Finding("role-not-in-template", f"role {role!r}: {_dropped_advice(role)}", count=len(set(rows)),
                    rows=sorted(set(rows))[:3]) for role, rows in dropped.items()]


def _dropped_advice(role: str) -> str:
    if role == "tool":
        return ("the template never renders tool results: its content is silently dropped (the template has no tool "
                "support; use the model's tool-use template, or drop these turns)")
    if role in CANONICAL_ROLES:
        return (f"the template drops {role} messages in this position: their content is silently missing from the "
                "training text")
    return ("the template never renders this role: its content is silently dropped (map it with `roles:` in the "
            "dataset entry, e.g. to user/assistant/system)")


def _reads_generation_prompt(source: str) -> bool:
    import jinja2.meta

    from evalsuite.chat.template import compile_template

    ast = compile_template(source).environment.parse(source)
    return "add_generation_prompt" in jinja2.meta.find_undeclared_variables(ast)


def missing_generation_prompt(ctx: Context) -> list[Finding]:
    for s in _usable(ctx):
        i = next((k for k, t in enumerate(s.key.turns) if t.role == "assistant" and k > 0), None)
        if i is None:
            continue
        prompt = s.messages[:i]
        try:
            with_gen = ctx.render(prompt, True, s.tools)
            without = ctx.render(prompt, False, s.tools)
        except TemplateRaised as e:
            return [Finding("missing-generation-prompt", f"rendering the inference prompt fails: {e}",
                            count=ctx.chat_rows(), rows=s.rows[:1])]
        glue = turn_glue(s, i)
        if with_gen != without or glue is None or not has_role_word(glue[0]):
            return []
        reads = _reads_generation_prompt(ctx.setup.template or "")
        why = "renders nothing" if reads else "is never read by the template (no add_generation_prompt branch)"
        return [Finding("missing-generation-prompt", f"add_generation_prompt {why}, although assistant turns open "
                        f"with a header ({glue[0].strip()!r}): inference prompts either lack the header or the "
                        "template writes it after every turn", count=ctx.chat_rows(), rows=s.rows[:1])]
    return []


def _after_terminator(tail: str, stops: set[str]) -> str:
    """What the render writes after the last answer's terminator (the last stop string in ``tail``)."""
    ends = [tail.rfind(t) + len(t) for t in stops if t and t in tail]
    return tail[max(ends):] if ends else tail


def open_turn_at_end(ctx: Context) -> list[Finding]:
    hit: list[ShapeFacts] = []
    tail = ""
    tk = ctx.setup.tk
    added = set(tk.added_tokens)
    stops = {t for t in (ctx.eot, tk.eos_token) if t} | {tok for tok, (i, _sp) in tk.added_tokens.items()
                                                        if i in ctx.setup.stop_ids}
    for s in _usable(ctx):
        n = len(s.key.turns)
        if n < 2 or s.key.turns[-1].role != "assistant" or not s.key.turns[-1].nonempty:
            continue
        glue = turn_glue(s, n - 1)
        if glue is None:
            continue
        rest = _after_terminator(glue[1], stops)
        if rest.strip() and (has_role_word(rest) or any(t in rest for t in added if len(t) > 2)):
            hit.append(s)
            tail = rest
    if not hit:
        return []
    rows = _rows(hit)
    return [Finding("open-turn-at-end", f"training samples end with {tail!r} after the final answer's terminator: "
                    "the template opens a new assistant turn at the end of every render, so the model is trained to "
                    "start another turn after answering (the April-2024 Llama-3 template does this)",
                    count=len(rows), rows=rows[:3])]


def not_prefix_preserving(ctx: Context) -> list[Finding]:
    eos = ctx.setup.tk.eos_token or ""
    hit: list[tuple[ShapeFacts, int]] = []
    for s in _usable(ctx):
        assert s.cut is not None
        full = s.cut.text
        for k in range(1, len(s.key.turns)):
            if s.key.turns[k - 1].role != "assistant":
                continue
            try:
                part = ctx.render(s.messages[:k], False, s.tools)
            except TemplateRaised:
                continue
            stripped = part.rstrip()
            bare = stripped[: -len(eos)] if eos and stripped.endswith(eos) else part
            if not (full.startswith(part) or full.startswith(bare)):
                hit.append((s, k))
                break
    if not hit:
        return []
    rows = _rows([s for s, _k in hit])
    s, k = hit[0]
    return [Finding("not-prefix-preserving", f"the render of the first {k} messages is not a prefix of the render "
                    f"of all {len(s.key.turns)} (role sequence {_roles(s)}): multi-turn training sees earlier turns "
                    "differently from the conversation the model is served", count=len(rows), rows=rows[:3])]


def control_token_split(ctx: Context) -> list[Finding]:
    tk = ctx.setup.tk
    added = set(tk.added_tokens)
    where: dict[str, list[int]] = defaultdict(list)
    for s in _usable(ctx):
        for token in control_strings(s.literal_text(), added):
            where[token] += s.rows
    grouped: dict[tuple[str, str], list[tuple[str, list[int], list[str]]]] = defaultdict(list)
    for token, rows in sorted(where.items()):
        ids = tk.encode(token)
        verdict = judge(token, added) if len(ids) != 1 else None
        if verdict is not None:
            grouped[(verdict.severity, verdict.why)].append((token, rows, [tk.tokenizer.id_to_token(i) for i in ids]))
    out = []
    for (severity, why), tokens in grouped.items():
        rows = sorted({r for _t, rs, _p in tokens for r in rs})
        shown = "; ".join(f"{t!r} is {len(p)} tokens {p[:6]}" for t, _rs, p in tokens[:4])
        out.append(Finding("control-token-split", f"control strings the template writes are not single tokens in "
                           f"this tokenizer: {shown}{' ...' if len(tokens) > 4 else ''}. {why}",
                           count=len(rows), rows=rows[:3], severity=severity))
    return out


def injected_text(ctx: Context) -> list[Finding]:
    tk = ctx.setup.tk
    remove = sorted({*tk.added_tokens, *(v for v in tk.special.values() if v)}, key=len, reverse=True)
    found: dict[str, list[int]] = defaultdict(list)
    for s in _usable(ctx):
        roles = ROLE_NAMES | {t.role for t in s.key.turns}
        for piece in s.literal_text().split("\x00"):
            bare = piece
            for t in remove:
                bare = bare.replace(t, " ")
            for _name, pattern in SHAPES:
                bare = pattern.sub(" ", bare)
            bare = XML.sub(" ", bare)
            words = [w for w in WORD.findall(bare) if w.lower() not in roles]
            if len(words) >= 2:
                found[" ".join(piece.split())[:100]] += s.rows
    return [Finding("injected-text", f"the template adds text that is not in the data: {text!r}", count=len(rows),
                    rows=rows[:3]) for text, rows in found.items()]


def span_mismatch(ctx: Context) -> list[Finding]:
    hit = [s for s in _usable(ctx) if s.cut is not None and s.cut.tag_spans is not None
           and tuple(s.cut.tag_spans) != tuple(s.cut.diff_spans)]
    if not hit:
        return []
    s = hit[0]
    assert s.cut is not None
    text = s.cut.text
    tags = [text[a:b] for a, b in s.cut.tag_spans or ()]
    diff = [text[a:b] for a, b in s.cut.diff_spans]
    rows = _rows(hit)
    return [Finding("span-mismatch", f"{{% generation %}} tags mark {tags[:2]!r} as the assistant's text, the "
                    f"render diff finds {diff[:2]!r}; the tags decide what is trained", count=len(rows),
                    rows=rows[:3])]


STRUCTURAL = (template_error, role_not_in_template, missing_generation_prompt, open_turn_at_end,
              not_prefix_preserving, control_token_split, injected_text, span_mismatch)
