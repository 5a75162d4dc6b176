"""Structural rules: one exemplar render per shape (``shapes.ShapeFacts``), never per row.

Each function is a pure predicate over the :class:`~evalsuite.lint.shapes.Context` and returns findings; the rows a
finding counts are the rows of the shapes it holds for.
"""

from __future__ import annotations

import re
from collections import defaultdict

from evalsuite.chat.template import TemplateRaised, TemplateRefused
from evalsuite.lint.findings import Finding
from evalsuite.lint.shapes import Context, ShapeFacts, has_role_word, turn_glue

ANGLE = re.compile(r"<\|[^<>|\s]{1,40}\|>|</?[A-Za-z][A-Za-z0-9_]{0,30}>")
BRACKET = re.compile(r"\[/?[A-Z][A-Z_]{1,30}\]")
DOUBLE_ANGLE = re.compile(r"<</?[A-Z]{2,10}>>")
WORD = re.compile(r"[^\W\d_]{3,}")
ROLE_NAMES = {"system", "user", "assistant", "model", "tool", "ipython", "human", "gpt", "function", "developer"}


def _roles(facts: ShapeFacts) -> str:
    return "/".join(r for r, _ in facts.key)


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
        spans = s.content_spans()
        for i, (role, nonempty) in enumerate(s.key):
            if nonempty and i not in spans:
                dropped[role] += s.rows
    return [Finding("role-not-in-template", f"role {role!r} is never rendered by the template: its content is "
                    "silently dropped (map it with `roles:` in the dataset entry, e.g. to user/assistant/system)",
                    count=len(set(rows)), rows=sorted(set(rows))[:3]) for role, rows in dropped.items()]


def _reads_generation_prompt(source: str) -> bool:
    import jinja2.meta

    from evalsuite.chat.template import compile_template

    ast = compile_template(source).environment.parse(source)
    return "add_generation_prompt" in jinja2.meta.find_undeclared_variables(ast)


def missing_generation_prompt(ctx: Context) -> list[Finding]:
    for s in _usable(ctx):
        i = next((k for k, (role, _n) in enumerate(s.key) if role == "assistant" and k > 0), None)
        if i is None:
            continue
        prompt = s.messages[:i]
        try:
            with_gen = ctx.render(prompt, True)
            without = ctx.render(prompt, False)
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


def _common_suffix(a: str, b: str) -> str:
    k = 0
    while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
        k += 1
    return a[len(a) - k:]


def open_turn_at_end(ctx: Context) -> list[Finding]:
    hit: list[ShapeFacts] = []
    tail = ""
    added = set(ctx.setup.tk.added_tokens)
    for s in _usable(ctx):
        n = len(s.key)
        if n < 2 or s.key[-1] != ("assistant", True):
            continue
        glue = turn_glue(s, n - 1)
        if glue is None:
            continue
        header = _common_suffix(glue[0], glue[1])
        if header.strip() and (has_role_word(header) or any(t in header for t in added if len(t) > 2)):
            hit.append(s)
            tail = header
    if not hit:
        return []
    rows = _rows(hit)
    return [Finding("open-turn-at-end", f"training samples end with {tail!r} after the final answer: the template "
                    "opens a new assistant turn at the end of every render, so the model is trained to start "
                    "another turn after answering (the April-2024 Llama-3 template does this)",
                    count=len(rows), rows=rows[:3])]


def train_infer_text(ctx: Context) -> list[Finding]:
    hit = [s for s in _usable(ctx) if s.cut is not None and any(p is None for _i, p in s.cut.gen_points)]
    if not hit:
        return []
    s = hit[0]
    assert s.cut is not None
    i = next(i for i, p in s.cut.gen_points if p is None)
    prompt = ctx.render(s.messages[:i], True)
    k = next((j for j, (a, b) in enumerate(zip(prompt, s.cut.text)) if a != b), min(len(prompt), len(s.cut.text)))
    rows = _rows(hit)
    return [Finding("train-infer-mismatch", f"the inference prompt for assistant turn {i} is not a prefix of the "
                    f"training text: it continues {prompt[k:k + 40]!r} where training has {s.cut.text[k:k + 40]!r}",
                    count=len(rows), rows=rows[:3])]


def not_prefix_preserving(ctx: Context) -> list[Finding]:
    eos = ctx.setup.tk.eos_token or ""
    hit: list[tuple[ShapeFacts, int]] = []
    for s in _usable(ctx):
        assert s.cut is not None
        full = s.cut.text
        for k in range(1, len(s.key)):
            if s.key[k - 1][0] != "assistant":
                continue
            try:
                part = ctx.render(s.messages[:k])
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
                    f"of all {len(s.key)} (role sequence {_roles(s)}): multi-turn training sees earlier turns "
                    "differently from the conversation the model is served", count=len(rows), rows=rows[:3])]


def control_token_split(ctx: Context) -> list[Finding]:
    tk = ctx.setup.tk
    bracket_style = any(BRACKET.fullmatch(t) for t in tk.added_tokens)
    where: dict[str, list[int]] = defaultdict(list)
    for s in _usable(ctx):
        lit = s.literal_text()
        found = set(ANGLE.findall(lit)) | (set(BRACKET.findall(lit)) if bracket_style else set())
        for token in found:
            where[token] += s.rows
    out = []
    for token, rows in sorted(where.items()):
        ids = tk.encode(token)
        if len(ids) != 1:
            pieces = [tk.tokenizer.id_to_token(i) for i in ids]
            out.append(Finding("control-token-split", f"{token!r} (written by the template) is {len(ids)} tokens "
                               f"{pieces} in this tokenizer, not one control token: the model reads it as text",
                               count=len(rows), rows=rows[:3]))
    return out


def injected_text(ctx: Context) -> list[Finding]:
    tk = ctx.setup.tk
    remove = sorted({*tk.added_tokens, *(v for v in tk.special.values() if v)}, key=len, reverse=True)
    found: dict[str, list[int]] = defaultdict(list)
    for s in _usable(ctx):
        roles = ROLE_NAMES | {r for r, _ in s.key}
        for piece in s.literal_text().split("\x00"):
            bare = piece
            for t in remove:
                bare = bare.replace(t, " ")
            bare = DOUBLE_ANGLE.sub(" ", BRACKET.sub(" ", ANGLE.sub(" ", bare)))
            words = [w for w in WORD.findall(bare) if w.lower() not in roles]
            if len(words) >= 2:
                found[" ".join(piece.split())[:100]] += s.rows
    return [Finding("injected-text", f"the template adds text that is not in the data: {text!r}", count=len(rows),
                    rows=rows[:3]) for text, rows in found.items()]


def stop_token_not_generated(ctx: Context) -> list[Finding]:
    setup = ctx.setup
    if not ctx.shapes or ctx.eot is None:
        return []
    eot_id = setup.tk.token_id(ctx.eot)
    if eot_id is None or eot_id in setup.stop_ids:
        return []
    return [Finding("stop-token-not-generated", f"assistant turns end with {ctx.eot!r} (id {eot_id}) but a server "
                    f"stops on {sorted(setup.stop_ids)} ({setup.stop_source}): generations run on past the answer. "
                    f"Add {eot_id} to generation_config.json's eos_token_id (evalsuite's run dir does) or set "
                    f"eos_token to {ctx.eot!r}", count=ctx.chat_rows(), rows=_rows(list(ctx.shapes.values()))[:1])]


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


STRUCTURAL = (template_error, role_not_in_template, missing_generation_prompt, open_turn_at_end, train_infer_text,
              not_prefix_preserving, control_token_split, injected_text, stop_token_not_generated, span_mismatch)
