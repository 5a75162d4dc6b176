"""SQuAD v1.1 answer normalisation on known values, without the dataset: each pair below normalises differently if
the published order (lower-case, drop punctuation, drop the articles, collapse whitespace) is changed, so a reordered
or skipped step fails here even where the shared fixtures are absent."""

from __future__ import annotations

import pytest

from evalsuite.metrics.squad_v11.squad_scoring import exact_match_score, f1_score, normalize_answer


@pytest.mark.parametrize(("text", "normal"), [
    ("The Denver Broncos", "denver broncos"),  # lower-case before the articles: "The" is an article
    ("a-team", "ateam"),  # punctuation before the articles: "a" is part of a word once "-" is gone
    ("the.end", "theend"),
    ("x the y", "x y"),  # whitespace collapsed after the articles leave their gap
    ("  Santa   Clara,\tCalifornia ", "santa clara california"),
    ("An apple, a day", "apple day"),
    ("THE", ""),
    ("l'été", "lété"),  # only ASCII punctuation goes; the accents stay
])
def test_normalize_answer_known_values(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


@pytest.mark.parametrize(("pred", "gold", "em", "f1"), [
    ("The Broncos", "Broncos", True, 1.0),
    ("A-Team", "ateam", True, 1.0),
    ("A-Team", "team", False, 0.0),
    ("x the y", "x y", True, 1.0),
    ("Broncos, Denver", "Denver Broncos", False, 1.0),  # tokens match as a multiset, the string does not
    ("denver denver broncos", "denver broncos", False, 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0)),
])
def test_exact_match_and_f1_known_values(pred: str, gold: str, em: bool, f1: float) -> None:
    assert exact_match_score(pred, gold) is em
    assert f1_score(pred, gold) == pytest.approx(f1)
