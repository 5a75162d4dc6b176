"""Rules about the tokenizer, the model files and the training set-up rather than the template."""

from __future__ import annotations

import string

from evalsuite.chat.messages import text_of
from evalsuite.lint.findings import Finding
from evalsuite.lint.rows import RowPass
from evalsuite.lint.shapes import Context

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
    setup = ctx.setup
    size = setup.model_vocab_size
    if size is None or setup.tk.vocab_size <= size:
        return []
    from evalsuite.chat.encode import encode_batch

    bad: list[int] = []
    top = 0
    samples = setup.samples
    opts = setup.encode_options()
    skip = {i for s in ctx.shapes.values() if s.error is not None for i in s.rows} | set(rp.hits.get("template-error",
                                                                                                    []))
    idx = [i for i in range(len(samples)) if i not in skip]
    for c0 in range(0, len(idx), 4096):
        chunk = idx[c0: c0 + 4096]
        for i, e in zip(chunk, encode_batch([samples[i] for i in chunk], setup.tk, setup.template, opts)):
            m = max(e.input_ids, default=0)
            if m >= size:
                bad.append(i)
                top = max(top, m)
    if not bad:
        return []
    return [Finding("vocab-out-of-range", f"{len(bad)} rows use token ids up to {top}, but the model's vocabulary "
                    f"has {size} rows (config.json vocab_size): the embedding lookup fails, or the trainer resizes "
                    "the embeddings and those rows start untrained", count=len(bad), rows=bad[:3])]


def unicode_roundtrip(ctx: Context, rp: RowPass) -> list[Finding]:
    """Every printable ASCII character and every non-ASCII character of the assistant targets, once each (framed as
    ``a?a`` so prefix-space handling does not matter), plus whole targets for a sample of rows."""
    tk = ctx.setup.tk
    candidates = sorted(rp.chars | set(string.printable))
    framed = ["a" + ch + "a" for ch in candidates]
    back = tk.tokenizer.decode_batch([e.ids for e in tk.tokenizer.encode_batch(framed, add_special_tokens=False)],
                                     skip_special_tokens=False)
    bad_chars = [ch for ch, f, d in zip(candidates, framed, back) if f != d]
    samples = ctx.setup.samples
    targets: list[tuple[int, str]] = []
    for i, s in enumerate(samples):
        if s.messages is not None:
            targets += [(i, text_of(m["content"])) for m in s.messages if m["role"] == "assistant"
                        and text_of(m["content"])]
        elif s.completion:
            targets.append((i, s.completion))
        if len(targets) >= ROUNDTRIP_SAMPLE:
            break
    encs = tk.tokenizer.encode_batch([c for _i, c in targets], add_special_tokens=False)
    decoded = tk.tokenizer.decode_batch([e.ids for e in encs], skip_special_tokens=False)
    rows = sorted({i for (i, c), d in zip(targets, decoded) if d != c})
    count = len(rows)
    if bad_chars:
        chars = set(bad_chars)
        rows = [i for i, s in enumerate(samples) if not chars.isdisjoint(_targets(s))]
        count = len(rows)
    if not rows:
        return []
    what = f"characters {''.join(bad_chars)!r} do not survive encode+decode" if bad_chars else \
        f"assistant text changes under encode+decode in {count} of the first {len(targets)} targets " \
        "(normalisation or whitespace)"
    return [Finding("unicode-roundtrip", f"{what}: the model is trained on text it cannot reproduce",
                    count=count, rows=rows[:3])]


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
