"""Render + tokenize + label: the one implementation shared by the lint and every trainer backend.

The lint promises to show the labels the trainer will use, so both call :func:`encode_sample`. Assistant spans come
from ``{% generation %}`` tags when the template has them (what TRL's ``assistant_only_loss`` uses) and otherwise
from a render diff: the text an assistant turn adds is ``render(turns[:i+1])`` minus ``render(turns[:i],
add_generation_prompt=True)``. Labels are ``-100`` outside trained spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evalsuite.chat_template import render
from evalsuite.data import Sample
from evalsuite.tokenizer_files import TokenizerInfo

IGNORE = -100


@dataclass(frozen=True)
class EncodeOptions:
    train_on_inputs: bool = False
    max_length: int | None = None


@dataclass
class Segment:
    """A character range of the rendered text and the role it belongs to."""

    start: int
    end: int
    role: str  # system/user/assistant/tool/..., "header" for an assistant turn's opening, "prompt"/"completion"
    trained: bool


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


def _strip_trailing_ws(text: str, start: int, end: int) -> int:
    # The newline a template writes after the end-of-turn token is never generated at inference; do not train it.
    while end > start and text[end - 1] in " \n\t\r":
        end -= 1
    return end


def chat_segments(template: str, tk: TokenizerInfo, messages: tuple[dict[str, str], ...],
                  train_on_inputs: bool) -> tuple[str, list[Segment], list[str]]:
    """Render a conversation and cut it into role segments by rendering each prefix."""
    variables = tk.template_variables()
    full = render(template, messages, special_tokens=variables).text
    segments: list[Segment] = []
    notes: list[str] = []
    prev_end = 0
    for i, msg in enumerate(messages):
        through = render(template, messages[: i + 1], special_tokens=variables).text
        if not full.startswith(through):
            notes.append(f"turn {i}: not prefix-preserving")
            content_at = full.find(msg["content"], prev_end) if msg["content"] else -1
            end = content_at + len(msg["content"]) if content_at >= 0 else prev_end
        else:
            end = len(through)
        if msg["role"] == "assistant":
            opened = render(template, messages[:i], special_tokens=variables,
                            add_generation_prompt=True).text if i else ""
            body_start = len(opened) if full.startswith(opened) and len(opened) >= prev_end else prev_end
            if body_start > prev_end:
                segments.append(Segment(prev_end, body_start, "header", train_on_inputs))
            trained_end = _strip_trailing_ws(full, body_start, end)
            segments.append(Segment(body_start, trained_end, "assistant", True))
            if end > trained_end:
                segments.append(Segment(trained_end, end, "header", train_on_inputs))
        elif end > prev_end:
            segments.append(Segment(prev_end, end, msg["role"], train_on_inputs))
        prev_end = max(prev_end, end)
    if prev_end < len(full):
        segments.append(Segment(prev_end, len(full), "header", train_on_inputs))
    return full, segments, notes


def _label(text: str, ids: list[int], offsets: list[tuple[int, int]], segments: list[Segment]
           ) -> tuple[list[int], list[str]]:
    labels: list[int] = []
    roles: list[str] = []
    j = 0
    for tid, (start, _end) in zip(ids, offsets):
        while j < len(segments) - 1 and start >= segments[j].end:
            j += 1
        seg = segments[j] if segments else Segment(0, len(text), "prompt", False)
        roles.append(seg.role)
        labels.append(tid if seg.trained and seg.start <= start < max(seg.end, seg.start + 1) else IGNORE)
    return labels, roles


def encode_sample(sample: Sample, tk: TokenizerInfo, template: str | None, opts: EncodeOptions) -> Encoded:
    """Token ids and labels for one sample, exactly as the trainer will see them."""
    tag_spans: tuple[tuple[int, int], ...] | None = None
    notes: list[str] = []
    if sample.messages is not None:
        if template is None:
            from evalsuite.errors import EvalsuiteError

            raise EvalsuiteError(f"{tk.path}: the tokenizer has no chat template and the config sets none "
                                 "(chat_template: chatml, or chat_template: jinja + chat_template_jinja: FILE)")
        text, segments, notes = chat_segments(template, tk, sample.messages, opts.train_on_inputs)
        if "generation" in template:
            tagged = render(template, sample.messages, special_tokens=tk.template_variables(),
                            track_generation=True)
            tag_spans = tagged.generation_spans or None
            if tag_spans:
                segments = _segments_from_tags(text, segments, tag_spans, opts.train_on_inputs)
        enc = tk.tokenizer.encode(text, add_special_tokens=False)
        ids, offsets = list(enc.ids), list(enc.offsets)
    else:
        prompt, completion = sample.prompt or "", sample.completion or ""
        text = prompt + completion
        enc = tk.tokenizer.encode(text, add_special_tokens=True)
        ids, offsets = list(enc.ids), list(enc.offsets)
        eos = tk.token_id(tk.eos_token)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
            offsets.append((len(text), len(text) + 1))
        segments = [Segment(0, len(prompt), "prompt", opts.train_on_inputs),
                    Segment(len(prompt), len(text) + 1, "completion", True)]
        # Special tokens the post-processor adds (BOS) have empty offsets at 0: they belong to the prompt.
    labels, roles = _label(text, ids, offsets, segments)
    diff_spans = tuple((s.start, s.end) for s in segments if s.role in ("assistant", "completion"))
    truncated = False
    if opts.max_length is not None and len(ids) > opts.max_length:
        ids, labels, roles = ids[: opts.max_length], labels[: opts.max_length], roles[: opts.max_length]
        truncated = True
    return Encoded(sample, text, ids, labels, roles, truncated, tag_spans, diff_spans, notes)


def _segments_from_tags(text: str, segments: list[Segment], spans: tuple[tuple[int, int], ...],
                        train_on_inputs: bool) -> list[Segment]:
    """With generation tags, the tags decide what is trained (as in TRL); roles still come from the diff."""
    out: list[Segment] = []
    for seg in segments:
        cuts = sorted({seg.start, seg.end, *[p for s in spans for p in s if seg.start < p < seg.end]})
        for a, b in zip(cuts, cuts[1:]):
            inside = any(s <= a and b <= e for s, e in spans)
            out.append(Segment(a, b, seg.role, inside or train_on_inputs))
    return out


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
