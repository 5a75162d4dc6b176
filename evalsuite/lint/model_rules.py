"""Rules about the tokenizer, the model files and the training set-up rather than the template."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

from evalsuite.chat.messages import text_of
from evalsuite.chat.template import TemplateRefused
from evalsuite.config.rows import Sample
from evalsuite.lint.findings import Finding
from evalsuite.lint.row_records import RowPass
from evalsuite.lint.shapes import Context
from evalsuite.lint.stream import CHUNK, chunks
from evalsuite.lint.tally import MAX_EXAMPLES, RowTally

ROUNDTRIP_SAMPLE = 64


def packing_contamination(ctx: Context, rp: RowPass) -> list[Finding]:
    setup = ctx.setup
    if not setup.packing or setup.collator == "trl":
        return []
    return [Finding("packing-contamination", "sample_packing concatenates samples but the mask-pad-id collator "
                    "passes one causal attention mask and running position ids per packed row: every sample attends "
                    "to the ones packed before it. TRL's BFD packing (evalsuite's backend) restarts position ids "
                    "per sample, which transformers turns into block-diagonal attention", count=rp.rows, rows=[0])]


def vocab_out_of_range(ctx: Context, rp: RowPass) -> list[Finding]:
    """Token ids past the model's embedding matrix: a second pass over the rows, only when the tokenizer's
    vocabulary is larger than the model's (rows of shapes or rows the template refuses are not encoded)."""
    setup = ctx.setup
    size = setup.model_vocab_size
    if size is None or setup.tk.vocab_size <= size:
        return []
    bad = RowTally()
    top = 0
    for part in chunks(setup.samples, CHUNK):
        for i, sample, e in _encoded(ctx, part):
            m = max(e.input_ids, default=0)
            if m >= size:
                if bad.add(i):
                    ctx.keep(i, sample)
                top = max(top, m)
    if not bad:
        return []
    return [Finding("vocab-out-of-range", f"{bad.count} rows use token ids up to {top}, but the model's vocabulary "
                    f"has {size} rows (config.json vocab_size): the embedding lookup fails, or the trainer resizes "
                    "the embeddings and those rows start untrained", count=bad.count, rows=bad.first)]


def _encoded(ctx: Context, part: list[tuple[int, Sample]]) -> Iterator[tuple[int, Sample, Any]]:
    """The trainer's encoding of each row the template accepts."""
    from evalsuite.chat.encode import encode_batch

    setup = ctx.setup
    opts = setup.encode_options()
    todo = [(i, s) for i, s in part if s.messages is None or not _refused_shape(ctx, s)]
    try:
        encs = encode_batch([s for _i, s in todo], setup.tk, setup.template, opts)
        yield from ((i, s, e) for (i, s), e in zip(todo, encs))
    except TemplateRefused:  # a row the template refuses (template-error): encode the others one by one
        for i, s in todo:
            try:
                e = encode_batch([s], setup.tk, setup.template, opts)[0]
            except TemplateRefused:
                continue
            yield i, s, e


def _refused_shape(ctx: Context, sample: Sample) -> bool:
    assert ctx.planner is not None and sample.messages is not None
    return ctx.shapes[ctx.planner.key(sample.messages, sample.tools)].error is not None


def unicode_roundtrip(ctx: Context, rp: RowPass) -> list[Finding]:
    """Every printable ASCII character and every non-ASCII character of the assistant targets, once each (framed as
    ``a?a`` so prefix-space handling does not matter), plus whole targets for a sample of rows. Rows holding a
    character that does not survive are counted in a second pass over the rows."""
    tk = ctx.setup.tk
    candidates = sorted(rp.chars | set(string.printable))
    framed = ["a" + ch + "a" for ch in candidates]
    back = tk.tokenizer.decode_batch([e.ids for e in tk.tokenizer.encode_batch(framed, add_special_tokens=False)],
                                     skip_special_tokens=False)
    bad_chars = [ch for ch, f, d in zip(candidates, framed, back) if f != d]
    if bad_chars:
        count, rows = _rows_with(ctx, set(bad_chars))
        what = f"characters {''.join(bad_chars)!r} do not survive encode+decode"
    else:
        count, rows, n = _changed_targets(ctx)
        what = f"assistant text changes under encode+decode in {count} of the first {n} targets " \
            "(normalisation or whitespace)"
    if not rows:
        return []
    return [Finding("unicode-roundtrip", f"{what}: the model is trained on text it cannot reproduce",
                    count=count, rows=rows)]


def _changed_targets(ctx: Context) -> tuple[int, list[int], int]:
    """(rows, first rows, targets looked at) of the first ROUNDTRIP_SAMPLE assistant targets that change."""
    tk = ctx.setup.tk
    targets: list[tuple[int, str]] = []
    samples: dict[int, Sample] = {}
    for i, s in enumerate(ctx.setup.samples):
        if s.messages is not None:
            targets += [(i, text_of(m["content"])) for m in s.messages if m["role"] == "assistant"
                        and text_of(m["content"])]
        elif s.completion:
            targets.append((i, s.completion))
        samples[i] = s
        if len(targets) >= ROUNDTRIP_SAMPLE:
            break
    encs = tk.tokenizer.encode_batch([c for _i, c in targets], add_special_tokens=False)
    decoded = tk.tokenizer.decode_batch([e.ids for e in encs], skip_special_tokens=False)
    rows = sorted({i for (i, c), d in zip(targets, decoded) if d != c})
    for i in rows[:MAX_EXAMPLES]:
        ctx.keep(i, samples[i])
    return len(rows), rows[:MAX_EXAMPLES], len(targets)


def _rows_with(ctx: Context, chars: set[str]) -> tuple[int, list[int]]:
    tally = RowTally()
    for i, s in enumerate(ctx.setup.samples):
        if not chars.isdisjoint(_targets(s)) and tally.add(i):
            ctx.keep(i, s)
    return tally.count, tally.first


def _targets(sample: object) -> str:
    msgs = getattr(sample, "messages", None)
    if msgs is not None:
        return "".join(text_of(m["content"]) for m in msgs if m["role"] == "assistant")
    return getattr(sample, "completion", None) or ""


def untrained_special_embeddings(ctx: Context, rp: RowPass) -> list[Finding]:
    setup = ctx.setup
    if setup.model_dir is None:
        return []
    from evalsuite.lint.weights import find_embedding, untrained_rows

    found = find_embedding(setup.model_dir)
    if found is None:
        return []
    tk = setup.tk
    used: dict[int, str] = {}
    literals = "\x00".join(s.literal_text() for s in ctx.shapes.values() if s.cut is not None)
    for content, (tid, _special) in tk.added_tokens.items():
        if content in literals:
            used[tid] = content
    for name in ("bos_token", "eos_token"):
        bid = tk.token_id(tk.special.get(name))
        if bid is not None and (name == "eos_token" or bid in used or ctx.text_rows):
            used[bid] = tk.special[name] or ""
    eot_id = tk.token_id(ctx.eot)
    if ctx.eot is not None and eot_id is not None:
        used[eot_id] = ctx.eot
    bad = untrained_rows(found[0], found[1], sorted(used))
    if not bad:
        return []
    names = ", ".join(f"{used[t]} (id {t}, norm {r:.0%} of median)" for t, r in sorted(bad.items()))
    trains_embeddings = {"embed_tokens", "lm_head"} <= set(setup.modules_to_save)
    sev = "info" if trains_embeddings else ""
    hint = "lora_modules_to_save trains them" if trains_embeddings else \
        "LoRA does not train embeddings: add embed_tokens and lm_head to lora_modules_to_save"
    return [Finding("untrained-special-embeddings", f"the template uses tokens whose embedding rows in "
                    f"{found[0].name} look untrained: {names}; {hint}", count=rp.rows, rows=[0], severity=sev)]


def tokenizer_not_replayed(ctx: Context, rp: RowPass) -> list[Finding]:
    note = ctx.setup.tk.compat_note
    return [Finding("tokenizer-not-replayed", note, count=rp.rows, rows=[])] if note else []


MODEL_RULES = (packing_contamination, vocab_out_of_range, unicode_roundtrip, untrained_special_embeddings,
               tokenizer_not_replayed)
