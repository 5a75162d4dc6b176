"""SQuAD v1.1 answer scoring, written from the published rules of the official v1.1 evaluation script.

Normalisation, in this order: lower-case; delete every ASCII punctuation character; replace the articles
"a", "an", "the" (whole words) with a space; collapse runs of whitespace to single spaces. Exact match compares the
normalised strings. F1 is the harmonic mean of token precision and recall over the normalised, whitespace-split
tokens, counting each shared token as often as it occurs in both (a multiset intersection); no shared token scores 0.
A prediction is scored against every gold answer and keeps the best score.

The arithmetic follows the published formulas term by term (``2 * precision * recall / (precision + recall)``, then
``100 * sum / total``) so that results agree with the official script to the last printed digit.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
T = TypeVar("T", bool, float)


def normalize_answer(text: str) -> str:
    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    shared = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if shared == 0:
        return 0
    precision = 1.0 * shared / len(pred_tokens)
    recall = 1.0 * shared / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def max_over_ground_truths(metric: Callable[[str, str], T], prediction: str, ground_truths: Sequence[str]) -> T:
    return max(metric(prediction, truth) for truth in ground_truths)


def aggregate(pairs: Sequence[tuple[str | None, Sequence[str]]]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent over ``(prediction or None, gold answers)`` pairs, in dataset order.
    A missing prediction (None) counts as a question answered wrongly, as in the official script."""
    exact = 0
    f1 = 0.0
    total = 0
    for prediction, truths in pairs:
        total += 1
        if prediction is None:
            continue
        exact += max_over_ground_truths(exact_match_score, prediction, truths)
        f1 += max_over_ground_truths(f1_score, prediction, truths)
    if total == 0:
        raise ValueError("no questions to score")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
