"""The lint's one pass over the data: rows are read as a stream, in chunks, and nothing of a row outlives its chunk.

For each chunk every row is counted into its shape (``Context.add``; a new shape's exemplar is rendered from its
first row) and then checked (``RowChecker.check``): what remains is per-rule and per-shape counts with the first few
rows (``tally``), per-role token counts and the samples of the rows a finding will show. Peak memory is two chunks
of rows and their encodings (one tokenized while the other is summarised), whatever the dataset's size; the data is
read again only by the rules that need a second look at every row (``vocab-out-of-range``, ``unicode-roundtrip``)
when they have something to report.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from evalsuite.config.rows import Sample
from evalsuite.lint.row_records import Row, RowPass
from evalsuite.lint.rows import RowChecker
from evalsuite.lint.setup import LintSetup
from evalsuite.lint.shapes import Context, new_context
from evalsuite.lint.tally import MAX_EXAMPLES

CHUNK = 4096  # rows per batched tokenizer call


def chunks(samples: Iterable[Sample], size: int) -> Iterator[list[tuple[int, Sample]]]:
    """(row index, sample) in lists of ``size``."""
    part: list[tuple[int, Sample]] = []
    for item in enumerate(samples):
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def scan(setup: LintSetup, chunk: int = CHUNK, keep: int = MAX_EXAMPLES) -> tuple[Context, RowPass]:
    """Read every row once: shapes and their exemplars, and the per-row checks, a chunk's tokenization in a worker
    thread while the chunk before it is summarised and the next is read. The cyclic garbage collector runs between
    chunks only: a chunk allocates many short-lived lists, and collections in the middle of one cost ~5%."""
    ctx = new_context(setup)
    checker = RowChecker(ctx, keep)
    enabled = gc.isenabled()
    gc.disable()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="evalsuite-lint-encode") as encoder:
            for part in chunks(setup.samples, chunk):
                checker.check([Row(i, s, ctx.add(i, s)) for i, s in part], encoder)
                del part
                gc.collect(1)
            checker.finish()
    finally:
        if enabled:
            gc.enable()
    return ctx, checker.out
