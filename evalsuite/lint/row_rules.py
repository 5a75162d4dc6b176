"""Rules decided row by row (from :class:`~evalsuite.lint.row_records.RowPass`: a count and the first rows per rule) and
BOS/EOS placement rules."""

from __future__ import annotations

from typing import Any

from evalsuite.chat.reasoning import OPENS
from evalsuite.chat.template import TemplateRaised
from evalsuite.lint.findings import Finding
from evalsuite.lint.row_records import RowPass
from evalsuite.lint.shapes import Context
from evalsuite.lint.tally import MAX_EXAMPLES, RowTally, merged


def _f(rule: str, message: str, rows: RowTally, severity: str = "") -> Finding:
    return Finding(rule, message, count=rows.count, rows=rows.first[:MAX_EXAMPLES], severity=severity)


def eos_findings(ctx: Context, rp: RowPass) -> list[Finding]:
    setup, tk = ctx.setup, ctx.setup.tk
    out = []
    rows = rp.tally("eos-not-trained")
    if rows:
        pad, eos = tk.pad_token, tk.eos_token
        if setup.collator == "mask-pad-id" and pad is not None and pad in {eos, ctx.eot}:
            why = (f"pad_token == {pad!r}, the terminator, and the collator sets labels to -100 wherever "
                   "input_ids == pad_token_id, so the terminator's label is masked: the model never learns to stop "
                   "(use a distinct pad token, or a collator that pads labels with -100 such as TRL's)")
        elif eos is None and ctx.text_rows:
            why = "the tokenizer has no eos_token, so nothing is appended to completions: the model never stops"
        else:
            why = ("no stop token (eos or the template's end-of-turn token) is inside the trained span: the model "
                   "never learns to end its answer")
        out.append(_f("eos-not-trained", f"{rows.count} of {rp.rows} rows: {why}", rows))
    rows = rp.tally("eos-truncated")
    if rows:
        out.append(_f("eos-truncated", f"{rows.count} rows are cut at sequence_len {setup.max_length} inside the "
                      "answer: they train the answer's start but not its terminator", rows))
    rows = rp.tally("no-trainable-tokens")
    if rows:
        sev = "error" if rows.count == rp.rows else ""
        cause = f" (sequence_len {setup.max_length} cuts before the answer)" if setup.max_length else ""
        out.append(_f("no-trainable-tokens", f"{rows.count} of {rp.rows} rows have no trained label{cause}; the "
                      "trainer drops them", rows, sev))
    rows = rp.tally("double-eos")
    if rows:
        out.append(_f("double-eos", f"{rows.count} rows train the same terminator twice in a row (content ending "
                      "with the EOS text, or a template and tokenizer both adding it)", rows))
    return out


def label_findings(ctx: Context, rp: RowPass) -> list[Finding]:
    setup = ctx.setup
    out = []
    fractions = trainable_fraction_by_role(rp)
    shown = ", ".join(f"{role} {frac:.0%}" for role, frac in sorted(fractions.items()))
    rows = rp.tally("prompt-trained")
    if setup.train_on_inputs:
        out.append(Finding("prompt-trained", f"train_on_inputs is true: trained fraction by role: {shown}",
                           count=rp.rows, severity="info", rows=[]))
    elif rows:
        out.append(_f("prompt-trained", f"{rows.count} rows train prompt tokens although train_on_inputs is false "
                      f"(trained fraction by role: {shown})", rows))
    rows = rp.tally("train-infer-mismatch")
    if rows:
        out.append(_f("train-infer-mismatch", f"{rows.count} rows: a token straddles the end of the inference prompt "
                      "(the generation prompt and the answer merge into one token), so the tokens the model sees "
                      "at inference are not a prefix of what it was trained on", rows))
    out += prompt_text_findings(ctx, rp)
    rows = rp.tally("boundary-shift")
    if rows:
        out.append(_f("boundary-shift", f"{rows.count} rows: tokenize(prompt) is not a prefix of "
                      "tokenize(prompt + completion); the first completion tokens differ from inference", rows))
    rows = rp.tally("special-text-in-content")
    if rows:
        common = ", ".join(repr(t) for t, _n in rp.special_found.most_common(4))
        out.append(_f("special-text-in-content", f"{rows.count} rows contain special-token text ({common}) in "
                      "message content; it is encoded as the control token itself", rows))
    rows = rp.tally("template-error")
    if rows:
        why = "; ".join(rp.refusals)
        out.append(_f("template-error", f"{why} ({rows.count} rows); the trainer stops on these rows", rows))
    return out


def prompt_text_findings(ctx: Context, rp: RowPass) -> list[Finding]:
    """Rows whose inference prompt is not a text prefix of their training text, shown on the first such row's own
    text (where the two part)."""
    rows = rp.tally("train-infer-text")
    if not rows or rp.prompt_gap is None:
        return []
    sample, turn = rp.prompt_gap
    assert sample.messages is not None
    try:
        prompt = ctx.render(sample.messages[:turn], True, sample.tools)
        text = ctx.render(sample.messages, False, sample.tools)
    except TemplateRaised:
        prompt = text = ""
    k = next((j for j, (a, b) in enumerate(zip(prompt, text)) if a != b), min(len(prompt), len(text)))
    hint = ""
    if any(prompt[k:].lstrip().startswith(o) or prompt[:k].rstrip().endswith(o) for o in OPENS):
        hint = (" The generation prompt opens a reasoning block that this training answer does not start with: give "
                "every trained answer its reasoning (<think>...</think> first), or, where the template strips the "
                "reasoning of earlier turns, train only the last answer (weight: 0 on earlier ones)")
    return [_f("train-infer-mismatch", f"{rows.count} rows: the inference prompt is not a prefix of the training "
               f"text (e.g. {sample.where}, assistant turn {turn}: the prompt continues {prompt[k:k + 40]!r} where "
               f"training has {text[k:k + 40]!r}), so the model is trained on a context it is never served.{hint}",
               rows)]


def stop_findings(ctx: Context, rp: RowPass) -> list[Finding]:
    rows = rp.tally("stop-token-not-generated")
    if not rows:
        return []
    setup, tk = ctx.setup, ctx.setup.tk
    runs = ", ".join(f"{run!r} (ids {[tk.token_id(t) for t in _pieces(run, tk)]}, {n} spans)"
                     for run, n in rp.unstopped.most_common(3))
    return [_f("stop-token-not-generated", f"{rows.count} rows train assistant turns ending with {runs}, but a server "
               f"stops on {sorted(setup.stop_ids)} ({setup.stop_source}): the model learns an ending no server "
               "stops on, and generations run on past the answer. Add the id to generation_config.json's "
               "eos_token_id (evalsuite's run dir does for the template's end of turn) or set eos_token; if that "
               "token also ends messages the model must continue after (gpt-oss's <|end|> after its analysis), train "
               "only the last assistant turn instead", rows)]


def _pieces(run: str, tk: Any) -> list[str]:
    """The added tokens a terminator run is made of, in order."""
    out, k = [], 0
    tokens = sorted(tk.added_tokens, key=len, reverse=True)
    while k < len(run):
        t = next((t for t in tokens if run.startswith(t, k)), run[k:])
        out.append(t)
        k += len(t)
    return out


def trainable_fraction_by_role(rp: RowPass) -> dict[str, float]:
    return {role: round(rp.role_trained[role] / n, 4) for role, n in rp.role_tokens.items() if n}


def bos_findings(ctx: Context, rp: RowPass) -> list[Finding]:
    tk = ctx.setup.tk
    bos = tk.token_id(tk.bos_token)
    if bos is None:
        return []
    adds_bos = tk.tokenizer.encode("a", add_special_tokens=True).ids[:1] == [bos]
    double: list[RowTally] = [rp.tally("double-bos")]  # text rows, judged row by row
    missing: list[RowTally] = []
    for s in ctx.shapes.values():
        if s.cut is None:
            continue
        first = tk.tokenizer.encode(s.cut.text, add_special_tokens=False).ids[:2]
        if first == [bos, bos]:
            double.append(s.rows)
        elif adds_bos and first[:1] != [bos]:
            missing.append(s.rows)
    out = []
    count, rows = merged(double)
    if count:
        out.append(Finding("double-bos", f"{count} rows start with BOS twice ({tk.bos_token!r}): the template or "
                           "prompt format writes it and the tokenizer adds it again", count=count, rows=rows))
    count, rows = merged(missing)
    if count:
        out.append(Finding("missing-bos", f"{count} rows do not start with {tk.bos_token!r}, which this tokenizer "
                           "adds to plain text (the base model was trained with it)", count=count, rows=rows))
    return out


ROW_RULES = (eos_findings, label_findings, bos_findings, stop_findings)
