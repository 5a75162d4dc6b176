"""Render + tokenize + label: the one implementation shared by the lint and every trainer backend.

The lint promises to show the labels the trainer will use, so both go through :func:`encode_batch` /
:func:`encode_sample`. Assistant spans come from ``{% generation %}`` tags when the template has them (what TRL's
``assistant_only_loss`` uses) and otherwise from a render diff (``evalsuite.chat.layout``): the text an assistant
turn adds is ``render(turns[:i+1])`` minus ``render(turns[:i], add_generation_prompt=True)``. Labels are ``-100``
outside trained spans. A token belongs to the segment its first character is in.

Speed: the render diff is learned once per role sequence and rows are spliced (``layout.Layout``); tokenization is
one batched call; labels are built by slicing at the segment boundaries found with ``Encoding.char_to_token``.
Text rows (prompt + completion) are tokenized with the tokenizer's special tokens (BOS) and get EOS appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.layout import Cut, Planner, planner, resolve
from evalsuite.chat.reasoning import has_reasoning_marker, reasoning_end
from evalsuite.chat.template import TemplateRaised, render
from evalsuite.chat.tokenizer import TokenizerInfo
from evalsuite.config.rows import Sample
from evalsuite.errors import EvalsuiteError

IGNORE = -100


@dataclass(frozen=True)
class EncodeOptions:
    train_on_inputs: bool = False
    max_length: int | None = None
    train_on_reasoning: bool = True  # false: an assistant turn's reasoning block is context, not a target


@dataclass
class Encoded:
    sample: Sample
    text: str
    input_ids: list[int]
    labels: list[int]
    roles: list[str]
    truncated: bool = False
    # Spans found from generation tags and from the render diff; the lint compares them when both exist.
    tag_spans: tuple[tuple[int, int], ...] | None = None
    diff_spans: tuple[tuple[int, int], ...] = ()
    notes: list[str] = field(default_factory=list)


@dataclass
class RowCut:
    """A sample rendered and cut into segments (character positions), ready to be tokenized."""

    sample: Sample
    text: str
    bounds: list[int]  # len(roles) + 1 positions
    roles: list[str]
    trained: list[bool]
    chat: bool
    cut: Cut | None = None


def stop_strings(tk: TokenizerInfo, template: str | None) -> tuple[str, ...]:
    """Strings that close an assistant turn: the template's end-of-turn token and the tokenizer's EOS."""
    out = []
    eot = end_of_turn_token(template, tk) if template else None
    for s in (eot, tk.eos_token):
        if s and s not in out:
            out.append(s)
    return tuple(out)


def chat_planner(tk: TokenizerInfo, template: str, train_on_inputs: bool) -> Planner:
    variables = tuple(sorted(tk.template_variables().items()))
    controls = tuple(sorted((t for t in tk.added_tokens if len(t) > 1 and not t.isspace()), key=len, reverse=True))
    return planner(template, variables, train_on_inputs, stop_strings(tk, template), controls)


def cut_sample(sample: Sample, tk: TokenizerInfo, template: str | None, opts: EncodeOptions,
               plan: Planner | None = None) -> RowCut:
    """Render and cut one sample. Template failures name the sample's file and row."""
    if sample.messages is None:
        prompt, completion = sample.prompt or "", sample.completion or ""
        text = prompt + completion
        return RowCut(sample, text, [0, len(prompt), len(text) + 1], ["prompt", "completion"],
                      [opts.train_on_inputs, True], chat=False)
    if template is None:
        raise EvalsuiteError(f"{tk.path}: the tokenizer has no chat template and the config sets none "
                             "(chat_template: chatml, or chat_template: jinja + chat_template_jinja: FILE)")
    plan = plan or chat_planner(tk, template, opts.train_on_inputs)
    try:
        cut = plan.cut(sample.messages, sample.tools)
    except TemplateRaised as e:
        raise type(e)(f"{sample.where}: {e}") from None
    bounds, roles, trained = split_reasoning_segments(cut.text, resolve(cut.points, cut.text), cut.roles,
                                                      cut.trained, opts.train_on_reasoning)
    return RowCut(sample, cut.text, bounds, list(roles), list(trained), chat=True, cut=cut)


def split_reasoning_segments(text: str, bounds: list[int], roles: Sequence[str], trained: Sequence[bool],
                             train_on_reasoning: bool) -> tuple[list[int], Sequence[str], Sequence[bool]]:
    """Give the reasoning block at the start of each assistant segment its own segment (role ``reasoning``, trained
    when ``train_on_reasoning``), so labels, the trainer and the lint's role counts all see it. Rows without a
    reasoning marker come back as they are (this runs on every row)."""
    if not has_reasoning_marker(text):
        return bounds, roles, trained
    out_b, out_r, out_t = [bounds[0]], [], []
    for j, role in enumerate(roles):
        a, b = bounds[j], bounds[j + 1]
        cut = reasoning_end(text, a, b) if role == "assistant" and b > a else None
        if cut is not None and a < cut < b:
            out_b.append(cut)
            out_r.append("reasoning")
            out_t.append(trained[j] and train_on_reasoning)
        out_b.append(b)
        out_r.append(role)
        out_t.append(trained[j])
    return out_b, out_r, out_t


def first_token_at(enc: Any, pos: int, text_len: int, n_tokens: int) -> int:
    """Index of the first token whose first character is at or after ``pos`` (tokens are in text order)."""
    while pos < text_len:
        t = enc.char_to_token(pos)
        if t is not None:
            return int(t) if enc.token_to_chars(t)[0] >= pos else int(t) + 1
        pos += 1
    return n_tokens


def chat_token_bounds(enc: Any, bounds: Sequence[int], text_len: int) -> list[int]:
    """Token index where each segment starts (chat rows carry no post-processor tokens)."""
    n = len(enc)
    return [first_token_at(enc, b, text_len, n) for b in bounds[:-1]] + [n]


def _text_token_bounds(offsets: Sequence[tuple[int, int]], bounds: Sequence[int]) -> list[int]:
    # Text rows may carry post-processor tokens (BOS, offsets (0, 0)); assign by offsets, token by token.
    out = [0]
    j = 0
    for t, (start, _end) in enumerate(offsets):
        while j < len(bounds) - 2 and start >= bounds[j + 1]:
            j += 1
            out.append(t)
    while len(out) < len(bounds) - 1:
        out.append(len(offsets))
    out.append(len(offsets))
    return out


def labels_from(ids: Sequence[int], tbounds: Sequence[int], trained: Sequence[bool], roles: Sequence[str]
                ) -> tuple[list[int], list[str]]:
    labels: list[int] = []
    role_of: list[str] = []
    for j, is_trained in enumerate(trained):
        a, b = tbounds[j], tbounds[j + 1]
        if b <= a:
            continue
        labels += ids[a:b] if is_trained else [IGNORE] * (b - a)
        role_of += [roles[j]] * (b - a)
    return labels, role_of


def tokenize_cuts(tk: TokenizerInfo, cuts: Sequence[RowCut]) -> list[Any]:
    """One batched call per kind of row; returns the ``tokenizers.Encoding`` of every cut, in order."""
    out: list[Any] = [None] * len(cuts)
    for chat in (True, False):
        idx = [i for i, c in enumerate(cuts) if c.chat is chat]
        if idx:
            encs = tk.tokenizer.encode_batch([cuts[i].text for i in idx], add_special_tokens=not chat)
            for i, e in zip(idx, encs):
                out[i] = e
    return out


def text_tokens(tk: TokenizerInfo, rc: RowCut, enc: Any) -> tuple[list[int], list[int]]:
    """Ids of a text row (EOS appended when the tokenizer did not add it) and each segment's first token."""
    ids = list(enc.ids)
    offsets = list(enc.offsets)
    eos = tk.token_id(tk.eos_token)
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
        offsets.append((len(rc.text), len(rc.text) + 1))
    return ids, _text_token_bounds(offsets, rc.bounds)


def finish(tk: TokenizerInfo, rc: RowCut, enc: Any, opts: EncodeOptions) -> Encoded:
    if rc.chat:
        ids = list(enc.ids)
        tbounds = chat_token_bounds(enc, rc.bounds, len(rc.text))
    else:
        ids, tbounds = text_tokens(tk, rc, enc)
    labels, roles = labels_from(ids, tbounds, rc.trained, rc.roles)
    truncated = False
    if opts.max_length is not None and len(ids) > opts.max_length:
        ids, labels, roles = ids[: opts.max_length], labels[: opts.max_length], roles[: opts.max_length]
        truncated = True
    cut = rc.cut
    if cut is None:
        diff = ((rc.bounds[1], rc.bounds[2]),)
        return Encoded(rc.sample, rc.text, ids, labels, roles, truncated, None, diff, [])
    return Encoded(rc.sample, rc.text, ids, labels, roles, truncated, cut.tag_spans, cut.diff_spans,
                   list(cut.notes))


def encode_batch(samples: Sequence[Sample], tk: TokenizerInfo, template: str | None, opts: EncodeOptions
                 ) -> list[Encoded]:
    """Token ids and labels for many samples, exactly as the trainer will see them (one tokenizer call)."""
    plan = chat_planner(tk, template, opts.train_on_inputs) if template is not None else None
    cuts = [cut_sample(s, tk, template, opts, plan) for s in samples]
    encs = tokenize_cuts(tk, cuts)
    return [finish(tk, rc, enc, opts) for rc, enc in zip(cuts, encs)]


def encode_sample(sample: Sample, tk: TokenizerInfo, template: str | None, opts: EncodeOptions) -> Encoded:
    """Token ids and labels for one sample, exactly as the trainer will see them."""
    return encode_batch([sample], tk, template, opts)[0]


def end_of_turn_token(template: str, tk: TokenizerInfo) -> str | None:
    """The added token that closes an assistant turn in this template (``<|im_end|>``, ``<|eot_id|>``,
    ``<end_of_turn>``, ``<|end|>``...), found by rendering a probe conversation; None if the turn has no such token.
    The server must stop on it, so it goes into ``generation_config.eos_token_id``."""
    probe = "\u2063probe\u2063"
    msgs = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": probe})
    try:
        text = render(template, msgs, special_tokens=tk.template_variables()).text
    except Exception:
        return None
    after = text.split(probe, 1)[1] if probe in text else ""
    ids = tk.encode(after.lstrip(" "), add_special_tokens=False)
    added = {i: content for content, (i, _special) in tk.added_tokens.items()}
    return added.get(ids[0]) if ids else None
