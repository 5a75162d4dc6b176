"""Text, JSON and GitHub-annotation output (SARIF is in ``sarif.py``). The text view shows each example as tokens
coloured by label (trained / masked) with special tokens made visible, like axolotl's debug view; without a terminal,
trained runs are wrapped in ``«»``. Annotations point at the data rows a finding names, else at the config line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.github import annotation, relative_path
from evalsuite.lint.locations import Locator
from evalsuite.lint.runner import LintReport

GREEN, DIM, CYAN, RED, YELLOW, BOLD, RESET = ("\x1b[32m", "\x1b[2m", "\x1b[36m", "\x1b[31m", "\x1b[33m", "\x1b[1m",
                                             "\x1b[0m")
SEV_COLOUR = {"error": RED, "warning": YELLOW, "info": CYAN}
ANNOTATION_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}
MAX_TOKENS_SHOWN = 160


def _byte_decoder() -> dict[str, int]:
    # GPT-2 byte-level alphabet (a published mapping): printable bytes map to themselves, the rest to U+0100+.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTES = _byte_decoder()


def token_text(token: str, special: bool, byte_level: bool) -> str:
    """A readable form of one vocabulary entry."""
    if special:
        return token
    if token.startswith("<0x") and token.endswith(">") and len(token) == 6:
        byte = int(token[3:5], 16)
        return chr(byte) if byte in (9, 10) or 32 <= byte < 127 else token  # a byte-fallback ASCII char
    if byte_level and all(ch in _BYTES for ch in token):
        token = bytes(_BYTES[ch] for ch in token).decode("utf-8", errors="replace")
    return token.replace("\u2581", " ")


def is_byte_level(tokenizer: Any) -> bool:
    return "ByteLevel" in str(getattr(tokenizer, "decoder", ""))


def render_tokens(ex: dict[str, Any], added: set[str], colour: bool, byte_level: bool = False,
                  limit: int = MAX_TOKENS_SHOWN) -> str:
    tokens, labels = ex["tokens"], ex["labels"]
    head = 0
    if len(tokens) > limit:
        # Show the end, where terminators and open turns live; say how much was skipped.
        head = len(tokens) - limit
    out: list[str] = [f"[{head} tokens not shown] "] if head else []
    in_trained = False
    for tok, lab in zip(tokens[head:], labels[head:]):
        special = tok in added
        piece = token_text(tok, special, byte_level).replace("\n", "\u21b5\n      ")
        trained = lab != -100
        if colour:
            style = (GREEN if trained else DIM) + (BOLD + CYAN if special else "")
            out.append(f"{style}{piece}{RESET}")
        else:
            if trained != in_trained:
                out.append("\u00ab" if trained else "\u00bb")
                in_trained = trained
            out.append(piece)
    if in_trained and not colour:
        out.append("\u00bb")
    return "".join(out)


def format_text(report: LintReport, colour: bool = False) -> str:
    setup, stats = report.setup, report.stats
    errors = sum(1 for f in report.findings if f.blocking)
    warnings = sum(1 for f in report.findings if f.severity == "warning" and not f.ignored)
    added = set(setup.tk.added_tokens)
    byte_level = is_byte_level(setup.tk.tokenizer)
    lines = [f"evalsuite lint: {setup.source}: {stats['rows']} rows, {stats['tokens']} tokens, {errors} error(s), "
             f"{warnings} warning(s) ({stats['elapsed_s']} s)",
             f"  train_on_inputs={str(setup.train_on_inputs).lower()} sequence_len={setup.max_length} "
             f"packing={str(setup.packing).lower()} collator={setup.collator} end_of_turn={stats['end_of_turn']!r} "
             f"stop ids={stats['stop_token_ids']}"]
    fractions = ", ".join(f"{r} {v:.0%}" for r, v in sorted(stats["trainable_fraction_by_role"].items()))
    lines.append(f"  trained fraction by role: {fractions or '-'}; truncated rows: {stats['truncated_rows']}")
    lines += [f"  note: {n}" for n in stats["notes"]]
    for f in report.findings:
        sev = "ignored" if f.ignored else f.severity
        tag = f"{SEV_COLOUR.get(f.severity, '')}{sev}{RESET}" if colour else sev
        lines.append("")
        lines.append(f"{tag} {f.rule} ({f.count} row{'s' if f.count != 1 else ''})")
        lines.append(f"  {f.message}")
        for ex in f.examples:
            lines.append(f"  example {ex['row']}{' (truncated)' if ex['truncated'] else ''}:")
            lines.append("      " + render_tokens(ex, added, colour, byte_level))
    for ex in report.shown:
        lines.append("")
        lines.append(f"sample {ex['row']}:")
        lines.append("      " + render_tokens(ex, added, colour, byte_level))
    if not report.findings:
        lines.append("no findings")
    return "\n".join(lines) + "\n"


def format_json(report: LintReport) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"


def counts_line(report: LintReport) -> str:
    errors = sum(1 for f in report.findings if f.blocking)
    warnings = sum(1 for f in report.findings if f.severity == "warning" and not f.ignored)
    ignored = sum(1 for f in report.findings if f.ignored)
    return (f"evalsuite lint: {report.setup.source}: {report.stats['rows']} rows, {errors} error(s), "
            f"{warnings} warning(s)" + (f", {ignored} ignored" if ignored else ""))


def format_github(report: LintReport, config: Path | None = None) -> str:
    """GitHub workflow commands, one per (finding, row shown), then the counts as a plain line. Ignored findings
    are left out (they were downgraded on purpose)."""
    locator = Locator(report, config)
    lines = []
    for f in report.findings:
        if f.ignored:
            continue
        locations = locator.of(f)
        shown = len(locations) if f.rows else 0
        message = f.message + (f" ({f.count} rows in all; the first {shown} annotated)" if f.count > shown > 0
                               else "")
        for loc in locations:
            lines.append(annotation(ANNOTATION_LEVEL[f.severity], message, title=f.rule, line=loc.line,
                                    file=relative_path(loc.path) if loc.path else None))
    lines.append(counts_line(report))
    return "\n".join(lines) + "\n"
