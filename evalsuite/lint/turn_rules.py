"""Rules about reasoning and tool use: what modern fine-tuning data carries and a template can silently lose.

- ``reasoning-dropped``: an assistant turn's reasoning (a reasoning field, or a ``<think>`` block in its content) is
  not in the training text. Qwen3, QwQ and gpt-oss keep only the last turn's reasoning, DeepSeek-R1's template keeps
  none, and templates without reasoning support never read ``reasoning_content``: earlier answers are then trained
  without the reasoning that led to them, so the model learns to answer without thinking.
- ``empty-reasoning``: trained answers hold an empty reasoning block the data did not write (Qwen3 writes
  ``<think>\\n\\n</think>`` before an answer that has no reasoning): the model learns to skip thinking.
- ``tools-ignored`` / ``tool-calls-dropped``: the row's ``tools`` or a message's ``tool_calls`` are nowhere in the
  render (the template has no tool support, or reads them under another shape).
- ``tool-call-as-text``: an answer's content is a call of a declared tool, outside ``tool_calls``: it is trained as
  plain text, not in the model's tool-call format.
"""

from __future__ import annotations

from evalsuite.chat.layout import resolve
from evalsuite.lint.findings import Finding
from evalsuite.lint.locate import TOOLS
from evalsuite.lint.row_records import RowPass
from evalsuite.lint.shapes import Context, ShapeFacts
from evalsuite.lint.tally import RowTally, merged
from evalsuite.lint.terminators import ANSWER_ROLES
from evalsuite.lint.turns import count_empty_blocks


def _usable(ctx: Context) -> list[ShapeFacts]:
    return [s for s in ctx.shapes.values() if s.cut is not None]


def _f(rule: str, message: str, rows: tuple[int, list[int]], severity: str = "") -> Finding:
    return Finding(rule, message, count=rows[0], rows=rows[1], severity=severity)


def tools_dropped(ctx: Context, rp: RowPass) -> list[Finding]:
    ignored: list[RowTally] = []
    calls: list[RowTally] = []
    for s in _usable(ctx):
        if "tools" in s.missing(TOOLS):
            ignored.append(s.rows)
        calls += [s.rows for i in range(len(s.key.turns)) if "tool_calls" in s.missing(i)]
    out = []
    rows = merged(ignored)
    if rows[0]:
        out.append(_f("tools-ignored", f"{rows[0]} rows give `tools`, but the template never renders "
                      "them: the model is trained to call tools it was never shown (use the model's tool-use "
                      "template)", rows))
    rows = merged(calls)
    if rows[0]:
        out.append(_f("tool-calls-dropped", f"{rows[0]} rows have assistant `tool_calls` that the "
                      "template does not render: those turns are trained without the call (the template has no "
                      "tool-call support, or reads calls in another shape: DeepSeek-R1's renders them only for "
                      "`content: null`, which apply_chat_template drops)", rows))
    return out


def _literal_empty_blocks(s: ShapeFacts) -> bool:
    """A spliced shape whose trained answer segments hold an empty reasoning block written by the template."""
    assert s.cut is not None
    text = s.cut.text
    pos = resolve(s.cut.points, text)
    return any(count_empty_blocks(text, pos[j], pos[j + 1]) for j, r in enumerate(s.cut.roles)
               if s.cut.trained[j] and r in ANSWER_ROLES)


def reasoning_findings(ctx: Context, rp: RowPass) -> list[Finding]:
    out = []
    acc = rp.turns
    rows = merged(rp.hits.get("reasoning-dropped", {}).values())
    if rows[0]:
        if acc.dropped_earlier and not acc.dropped_all:
            how = (f"the template keeps only the last turn's reasoning: {acc.dropped_earlier} earlier answers are "
                   "trained without the reasoning that led to them, so the model learns to answer without thinking "
                   "(split multi-turn rows into one row per answer, or use a training template that keeps it)")
        else:
            how = (f"{acc.dropped_all + acc.dropped_earlier} of {acc.reasoning_turns} reasoning turns are trained "
                   "without their reasoning: the template never renders it (no reasoning support, or it reads "
                   "another field: put it in the content as <think>...</think>, or use a reasoning template)")
        out.append(_f("reasoning-dropped", f"{rows[0]} rows: {how}", rows))
    rows = _empty_reasoning_rows(ctx, rp)
    if rows[0]:
        out.append(_f("empty-reasoning", f"{rows[0]} rows train an empty reasoning block the data does not "
                      "have (the template writes it before answers without reasoning): the model learns to skip "
                      "thinking. Fine for a non-thinking mode; otherwise give those answers their reasoning", rows))
    rows = merged(rp.hits.get("tool-call-as-text", {}).values())
    if rows[0]:
        out.append(_f("tool-call-as-text", f"{acc.calls_as_text} assistant answers in {rows[0]} rows are a call "
                      "of a declared tool written as plain content: the model learns to answer with the call's JSON "
                      "as text instead of its tool-call format (put it in `tool_calls`)", rows))
    return out


def _empty_reasoning_rows(ctx: Context, rp: RowPass) -> tuple[int, list[int]]:
    """Rows judged one by one, joined with every row of a spliced shape whose literals hold an empty block (a row
    can be both: a shape's rows that did not splice were judged one by one, so for such a shape take all rows)."""
    literal = {s.key: s.rows for s in _usable(ctx) if s.sentinel and _literal_empty_blocks(s)}
    judged = [t for key, t in rp.hits.get("empty-reasoning", {}).items() if key not in literal]
    return merged([*judged, *literal.values()])


TURN_RULES = (tools_dropped, reasoning_findings)
