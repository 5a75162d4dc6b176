"""A half-learned leak: the marker's name survives while its brackets are garbled."""

from __future__ import annotations

from evalsuite.probe.textchecks import MARKER_NAMES, leakage_findings


def test_garbled_marker_names_are_leakage() -> None:
    assert "end_of_turn" in MARKER_NAMES and "im_start" in MARKER_NAMES and "user" not in MARKER_NAMES
    found = leakage_findings("hello_end_of_turn_", "hello_end_of_turn_")
    assert found and "end_of_turn" in found[0]


def test_plain_answers_are_not_leakage() -> None:
    plain = "The user asked about the end of the turn."
    assert leakage_findings(plain, plain) == []
    # an intact marker is reported as a marker, not again as a garbled name
    found = leakage_findings("hi<end_of_turn>", "hi<end_of_turn>")
    assert found and not any("garbled" in f for f in found)
