"""The per-row checks: every row is cut (spliced from its shape's layout when possible), tokenized in batches, and
summarised as :class:`RowFacts` without materialising label lists. Rows come chunk by chunk (``lint.stream``); what
outlives a chunk is counts (``tally.RowTally`` per rule and shape, per role, per terminator) and the samples of the
first rows a finding will show.

A row's facts come from its segment boundaries in token space (``Encoding.char_to_token``) and the positions of the
stop and pad tokens. For spliced rows those positions come from the layout's literals; rows whose contents contain
special-token text, rows rendered in full and text rows read the ids instead. Either way the facts equal what the
trainer's labels say (``encode_batch``); a test checks the two agree. Label 0 never counts as trained: a causal LM
never predicts the first token (TRL's packing also masks it per packed sample).

Each trained assistant span is also judged by the terminator run at its end (``evalsuite.lint.terminators``), and
rows rendered in full (the template inspects content, or the row has tools, tool calls or reasoning fields) by what
the template did to their reasoning and tool calls (``evalsuite.lint.turns``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any

from evalsuite.chat.encode import (
    EncodeOptions,
    RowCut,
    chat_token_bounds,
    cut_sample,
    split_reasoning_segments,
    text_tokens,
    tokenize_cuts,
)
from evalsuite.chat.layout import Layout, ShapeKey
from evalsuite.chat.messages import text_of
from evalsuite.chat.reasoning import CLOSES, OPENS
from evalsuite.chat.template import TemplateRefused
from evalsuite.lint.row_records import Encoded, Row, RowFacts, RowPass, Spliced
from evalsuite.lint.shapes import Context
from evalsuite.lint.tally import MAX_EXAMPLES, RowTally
from evalsuite.lint.terminators import StopCheck
from evalsuite.lint.turns import check_turns

PROMPT_ROLES_OK = ("assistant", "reasoning", "completion")
# Markers a model writes in its own answers: reasoning blocks and tool calls. In assistant content they are the
# answer's format, not stray control text.
OWN_MARKERS = frozenset({*OPENS, *CLOSES, "<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>",
                         "<|tool_call|>", "<|/tool_call|>"})


def special_pattern(ctx: Context) -> re.Pattern[str] | None:
    """Added-token strings that would be encoded as control tokens if they appear in content."""
    strings = [s for s in ctx.setup.tk.added_tokens if len(s) >= 3 and not s.replace("_", "").isalnum()
               and not s.isspace()]
    if not strings:
        return None
    return re.compile("|".join(re.escape(s) for s in sorted(strings, key=len, reverse=True)))


class RowChecker:
    def __init__(self, ctx: Context, keep: int = MAX_EXAMPLES) -> None:
        self.ctx = ctx
        setup = ctx.setup
        self.tk = setup.tk
        self.max_len = setup.max_length
        self.opts = EncodeOptions(setup.train_on_inputs, setup.max_length, setup.train_on_reasoning)
        self.pad_id = setup.pad_id if setup.collator == "mask-pad-id" else None
        ids = [self.tk.token_id(s) for s in ((ctx.eot,) if ctx.eot else ())] + [self.tk.token_id(self.tk.eos_token)]
        self.stop_ids = {i for i in ids if i is not None} | setup.stop_ids
        self.mark_ids = self.stop_ids | ({self.pad_id} if self.pad_id is not None else set())
        self.special = special_pattern(ctx)
        self.special_firsts = {t[0] for t in ctx.setup.tk.added_tokens if t} if self.special is not None else set()
        self.anchors: dict[Any, list[tuple[int, int, int]]] = {}
        self.bos = self.tk.token_id(self.tk.bos_token)
        self.out = RowPass(keep=keep)
        self.ends = StopCheck(self.tk, setup.stop_ids, self.pad_id, self.out.unstopped)
        self.chunk: dict[int, Row] = {}
        self.pending: tuple[Future[Encoded], dict[int, Row]] | None = None  # tokenizing in the encoder thread

    def hit(self, rule: str, row: int) -> None:
        """Count ``row`` (of the current chunk) for ``rule``, keeping its sample while it is one of the first."""
        entry = self.chunk[row]
        by_shape = self.out.hits.setdefault(rule, {})
        tally = by_shape.get(entry.key)
        if tally is None:
            tally = by_shape[entry.key] = RowTally(self.out.keep)
        if tally.add(row):
            self.ctx.keep(row, entry.sample)

    # -- marks: positions of stop / pad tokens ------------------------------------------------------------------
    def _layout_marks(self, key: Any) -> list[tuple[int, int, int]]:
        """(literal index, offset, token id) of every stop/pad token string inside the layout's literals."""
        cached = self.anchors.get(key)
        if cached is None:
            plan = self.ctx.shapes[key].plan
            layout = plan.layout if plan is not None else None
            cached = []
            if layout is not None:
                strings = {s: i for s, (i, _sp) in self.tk.added_tokens.items() if i in self.mark_ids}
                for k, lit in enumerate(layout.literals):
                    for s, tid in strings.items():
                        start = lit.find(s)
                        while start >= 0:
                            cached.append((k, start, tid))
                            start = lit.find(s, start + len(s))
            self.anchors[key] = cached
        return cached

    def _ids_marks(self, enc: Any) -> list[tuple[int, int]]:
        mark_ids = self.mark_ids
        return [(t, x) for t, x in enumerate(enc.ids) if x in mark_ids]

    def _literal_marks(self, key: Any, starts: Sequence[int], enc: Any) -> list[tuple[int, int]]:
        out = []
        for k, off, tid in self._layout_marks(key):
            t = enc.char_to_token(starts[k] + off)
            if t is not None:
                out.append((t, tid))
        return out

    # -- facts ----------------------------------------------------------------------------------------------------
    def facts(self, n: int, tb: Sequence[int], trained: Sequence[bool], roles: Sequence[str],
              marks: list[tuple[int, int]]) -> RowFacts:
        eff = min(n, self.max_len) if self.max_len is not None else n
        f = RowFacts()
        out = self.out
        for j, is_trained in enumerate(trained):
            a, b = tb[j], min(tb[j + 1], eff)
            if b <= a:
                continue
            out.role_tokens[roles[j]] += b - a
            if is_trained:
                k = b - max(a, 1)
                if k > 0:
                    f.trained += k
                    out.role_trained[roles[j]] += k
                    if roles[j] not in PROMPT_ROLES_OK:
                        f.prompt_trained = True
        prev_stop = -2
        prev_id = -1
        for t, tid in marks:
            seg = bisect_right(tb, t) - 1
            if not (0 <= seg < len(trained) and trained[seg]) or t < 1:
                continue
            if t >= eff:
                if tid in self.stop_ids:
                    f.stop_cut_off = True
                continue
            if tid == self.pad_id:
                f.trained -= 1
                out.role_trained[roles[seg]] -= 1
                continue
            if tid in self.stop_ids:
                f.has_trained_stop = True
                if t == prev_stop + 1 and tid == prev_id:
                    f.double_eos = True
                prev_stop, prev_id = t, tid
        return f

    def record(self, row: int, f: RowFacts, n: int) -> None:
        out = self.out
        out.rows += 1
        if self.max_len is not None and n > self.max_len:
            out.truncated += 1
            n = self.max_len
        out.tokens += n  # what the trainer sees, after truncation
        if f.trained <= 0:
            self.hit("no-trainable-tokens", row)
        elif not f.has_trained_stop:
            self.hit("eos-truncated" if f.stop_cut_off else "eos-not-trained", row)
        if f.prompt_trained and not self.ctx.setup.train_on_inputs:
            self.hit("prompt-trained", row)
        if f.straddles:
            self.hit("train-infer-mismatch", row)
        if f.double_eos:
            self.hit("double-eos", row)

    # -- rows -------------------------------------------------------------------------------------------------------
    def _scan(self, row: int, msgs: Sequence[dict[str, Any]]) -> bool:
        """Special-token text in any content (True: read this row's ids), and the assistant's non-ASCII chars.
        A reasoning or tool-call marker the model itself writes at its place in an assistant turn is not counted
        (``<think>`` in a reasoning answer)."""
        found = False
        special, firsts = self.special, self.special_firsts
        for m in msgs:
            c = m["content"]
            if type(c) is not str:
                c = text_of(c)
            if special is not None and c and any(ch in c for ch in firsts):
                hits = special.findall(c)
                if hits:
                    found = True
                    unexpected = [h for h in hits if not (m["role"] == "assistant" and h in OWN_MARKERS)]
                    if unexpected:
                        self.out.special_found.update(unexpected)
                        self.hit("special-text-in-content", row)
            if m["role"] == "assistant" and not c.isascii():
                self.out.chars.update(c)
        return found

    def _chat(self, row: int, text: str, bounds: Sequence[int], trained: Sequence[bool], roles: Sequence[str],
              enc: Any, marks: list[tuple[int, int]], gens: Sequence[int | None]) -> RowFacts:
        n = len(enc)
        text_len = len(text)
        tb = chat_token_bounds(enc, bounds, text_len)  # the encoder's own segment-to-token rule
        f = self.facts(n, tb, trained, roles, marks)
        for g in gens:
            if g is not None and g < text_len:
                t = enc.char_to_token(g)
                if t is not None and enc.token_to_chars(t)[0] < g:
                    f.straddles = True
        return f

    def _eff(self, enc: Any) -> int:
        n = len(enc)
        return min(n, self.max_len) if self.max_len is not None else n

    def spliced_row(self, entry: Spliced, enc: Any) -> None:
        found = self._scan(entry.row, entry.msgs)
        marks = self._ids_marks(enc) if found else self._literal_marks(entry.key, entry.starts, enc)
        starts = entry.starts
        gens = [None if a is None else starts[a[0]] + a[1] for _i, a in entry.layout.gen_points]
        f = self._chat(entry.row, entry.text, entry.bounds, entry.trained, entry.roles, enc, marks, gens)
        if self.ends.spliced(entry.key, entry.layout, entry.text, entry.starts, enc, self._eff(enc)):
            self.hit("stop-token-not-generated", entry.row)
        self.record(entry.row, f, len(enc))

    def chat_row(self, row: int, rc: RowCut, enc: Any) -> None:
        msgs = rc.sample.messages or ()
        self._scan(row, msgs)
        cut = rc.cut
        gens = [pos for _i, pos in cut.gen_points] if cut is not None else []
        f = self._chat(row, rc.text, rc.bounds, rc.trained, rc.roles, enc, self._ids_marks(enc), gens)
        if self.ends.row(rc.text, rc.bounds, rc.roles, rc.trained, enc, self._eff(enc)):
            self.hit("stop-token-not-generated", row)
        if cut is not None:
            missing = [i for i, pos in cut.gen_points if pos is None]
            if missing:
                self.hit("train-infer-text", row)
                if self.out.prompt_gap is None:  # rows come in order: the first one is the example
                    self.out.prompt_gap = (rc.sample, missing[0])
        for rule in check_turns(self.out.turns, msgs, rc.sample.tools, rc.text, rc.bounds, rc.roles, rc.trained):
            self.hit(rule, row)
        self.record(row, f, len(enc))

    def text_row(self, row: int, rc: RowCut, enc: Any, prompt_ids: list[int]) -> None:
        completion = rc.sample.completion or ""
        if self.special is not None and completion:
            hits = self.special.findall(completion)
            if hits:
                self.out.special_found.update(hits)
                self.hit("special-text-in-content", row)
        if not completion.isascii():
            self.out.chars.update(completion)
        ids, tb = text_tokens(self.tk, rc, enc)
        marks = [(t, x) for t, x in enumerate(ids) if x in self.mark_ids]
        f = self.facts(len(ids), tb, rc.trained, rc.roles, marks)
        if ids[: len(prompt_ids)] != prompt_ids:
            self.hit("boundary-shift", row)
        if self.bos is not None and ids[:2] == [self.bos, self.bos]:
            self.hit("double-bos", row)
        self.record(row, f, len(ids))

    def check(self, chunk: Sequence[Row], encoder: Executor) -> None:
        """One chunk of rows: splice (Python), tokenize in ``encoder`` (one worker thread: ``encode_batch`` uses every
        core and releases the GIL) while this thread summarises the chunk before it and reads the next;
        :meth:`finish` summarises the last. Rows are summarised in order. Rows of a shape the template refuses are
        not checked (``template-error`` counts them)."""
        shapes = self.ctx.shapes
        todo = [r for r in chunk if r.key is None or shapes[r.key].error is None]
        mine = {r.row: r for r in todo}
        self.chunk = {**(self.pending[1] if self.pending else {}), **mine}  # _prepare hits this chunk's rows
        encoding = encoder.submit(self._encode, *self._prepare(todo))
        self.finish()
        self.pending = (encoding, mine)

    def finish(self) -> None:
        """Summarise the chunk whose tokenization is pending, if any."""
        if self.pending is None:
            return
        encoding, rows = self.pending
        self.pending = None
        self.chunk = rows
        self._consume(encoding.result())
        self.chunk = {}

    def _splice(self, i: int, msgs: Sequence[dict[str, Any]], key: ShapeKey, layout: Layout) -> Spliced | None:
        """The encoder's own splice (Layout.build + positions), without building Cut objects."""
        contents = [m["content"] for m in msgs]
        if not layout.accepts(contents):
            return None
        text, starts = layout.build(contents)
        bounds, roles, trained = split_reasoning_segments(text, layout.positions(text, starts), layout.roles,
                                                          layout.trained, self.opts.train_on_reasoning)
        return Spliced(i, text, bounds, roles, trained, layout, starts, key, msgs)

    def _prepare(self, rows: list[Row]) -> tuple[list[Spliced], list[tuple[int, RowCut]]]:
        setup = self.ctx.setup
        planner = self.ctx.planner
        spliced: list[Spliced] = []
        cuts: list[tuple[int, RowCut]] = []
        for i, sample, key in rows:
            msgs = sample.messages
            if msgs is not None and planner is not None and key is not None:
                layout = planner.shape(key).layout
                entry = self._splice(i, msgs, key, layout) if layout is not None else None
                if entry is not None:
                    spliced.append(entry)
                    continue
            try:
                cuts.append((i, cut_sample(sample, self.tk, setup.template, self.opts, planner)))
            except TemplateRefused as e:
                self.hit("template-error", i)
                self.out.refusals[str(e).split(": chat template raised: ", 1)[-1]] += 1
        return spliced, cuts

    def _encode(self, spliced: list[Spliced], cuts: list[tuple[int, RowCut]]) -> Encoded:
        """Tokenizer calls only (batched)."""
        tok = self.tk.tokenizer
        encs = tok.encode_batch([e.text for e in spliced], add_special_tokens=False) if spliced else []
        cut_encs = tokenize_cuts(self.tk, [rc for _i, rc in cuts])
        text_rows = [(i, rc) for i, rc in cuts if not rc.chat]
        penc = tok.encode_batch([rc.sample.prompt or "" for _i, rc in text_rows], add_special_tokens=True) \
            if text_rows else []
        return Encoded(spliced, encs, cuts, cut_encs, text_rows, penc)

    def _consume(self, chunk: Encoded) -> None:
        for entry, enc in zip(chunk.spliced, chunk.encs):
            self.spliced_row(entry, enc)
        prompts = {i: self._prompt_ids(e.ids) for (i, _rc), e in zip(chunk.text_rows, chunk.penc)}
        for (i, rc), enc in zip(chunk.cuts, chunk.cut_encs):
            if rc.chat:
                self.chat_row(i, rc, enc)
            else:
                self.text_row(i, rc, enc, prompts[i])

    def _prompt_ids(self, ids: list[int]) -> list[int]:
        # A tokenizer that appends EOS to every encoding would end the prompt with it; the prefix test ignores it.
        eos = self.tk.token_id(self.tk.eos_token)
        return ids[:-1] if ids and ids[-1] == eos else list(ids)
