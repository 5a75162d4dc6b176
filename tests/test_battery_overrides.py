"""--squad-n / --squad-dataset must only touch the squad battery's source (regression: --squad-n 20 once shrank the
uppercase-echo held-out set to 20, and the demo measured its target on 24 prompts instead of 100)."""

from __future__ import annotations

from evalsuite.probe.batteries import load_battery
from evalsuite.probe.runner import resolve_batteries


def test_squad_overrides_leave_other_generated_batteries_alone() -> None:
    plain = load_battery(resolve_batteries(["uppercase-echo"])[0])
    overridden = load_battery(resolve_batteries(["uppercase-echo"])[0], {"n": 20})
    assert len(overridden.cases) == len(plain.cases) == 100
