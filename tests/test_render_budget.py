"""Issue 31: the render budget bounds what one C call can do and how much memory a render builds up. Each template
below would run for minutes inside one multiplication, join or ``str()``, or fill the memory, without it; each must end
in one clear error naming the template, within seconds. Sizes are picked so that a missing check fails loudly and
cheaply (an allocation far past the machine's memory is refused by the OS at once) rather than filling memory."""

from __future__ import annotations

import pytest
from cli_helpers import time_limit

from evalsuite.chat import budget
from evalsuite.chat.named import named_template
from evalsuite.chat.template import TemplateRaised, _environment, render

MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "HI"}]
L = "{% set L = [0] * 10000000 %}"  # a list within the size budget (10M items) that the templates below build on
WIDE = "{% set a = ('f' * 9000000)|int(base=16) %}"  # a 36M-bit integer: `int` reads base 16 in linear time

C_LEVEL = [
    # big integers: one multiplication, power or division of wide integers runs for minutes
    ("{{ 2**64000000 * 2**64000000 }}", "integer of"),
    ("{{ 3 ** 40000000 }}", "integer of"),
    (WIDE + "{{ a * a }}", "integer of"),
    (WIDE + "{{ a // (a - 1) }}", "integer of"),
    (WIDE + "{{ a % 7 }}", "integer of"),
    (WIDE + "{{ a + 1 }}", "integer of"),
    # list building in one C call
    (L + "{{ [L, L, L, L]|sum(start=[]) }}", "a string or list of length 20,000,000"),
    (L + "{{ (L + L)|length }}", "a string or list of length 20,000,000"),
    # a list or dict turned into text in one C call
    (L + "{{ [L, L]|string }}", "over the render budget"),
    (L + "{{ [L, L] }}", "an output of length"),
    (L + "{{ [L] ~ 'x' }}", "over the render budget"),
    (L + "{{ '%s' % [L] }}", "a formatted string"),
    (L + "{{ '{}'.format(L) }}", "a formatted string"),
    (L + "{{ [L]|tojson }}", "a JSON text"),
    (L + "{{ [L, L]|join(',') }}", "over the render budget"),
    (L + "{{ [L]|upper }}", "over the render budget"),
    (L + "{{ {'a': L}|xmlattr }}", "over the render budget"),
    # filters that loop in C over every item
    (L + "{{ L|sort|first }}", "would sort 10,000,000 items"),
    (L + "{{ L|unique|list|length }}", "would deduplicate 10,000,000 items"),
    ("{{ [1]|slice(100000000)|list|length }}", "100,000,000 groups"),
    (L + "{{ dict.fromkeys(L)|length }}", "would put in a dict 10,000,000 items"),
    # bytes, translate, escaping, strftime
    ("{{ 'x'.encode() * 10**11 }}", "over the render budget"),
    ("{{ 'x'.encode().center(10**11) }}", "over the render budget"),
    ("{{ ('x' * 1000000).translate({120: 'y' * 1000}) }}", "over the render budget"),
    ("{{ ('\"' * 10000000)|forceescape }}", "an escaped string"),
    ("{{ strftime_now('%c' * 5000000) }}", "format of 10,000,000 characters"),
]


@pytest.mark.parametrize("source,expected", C_LEVEL, ids=[s[-40:] for s, _ in C_LEVEL])
def test_one_c_call_is_checked_before_it_runs(source: str, expected: str) -> None:
    with time_limit(30, "a render"), pytest.raises(TemplateRaised) as err:
        render(named_template(source, "/x/t.jinja", is_file=True), MESSAGES)  # type: ignore[arg-type]
    message = str(err.value)
    assert "chat template /x/t.jinja" in message and expected in message, message
    assert len(message) < 400  # one line, not the value it refused


def test_memory_built_over_many_operations_stops_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step builds a fresh 80 MB list, within the size budget; the resident growth stops the render."""
    monkeypatch.setattr(budget, "MEMORY", 300 * 2**20)
    source = ("{% set ns = namespace(kept=[]) %}{% for i in range(100) %}"
              "{% set ns.kept = ns.kept + [[i] * 10000000] %}{% endfor %}{{ ns.kept|length }}")
    with time_limit(60, "a render"), pytest.raises(TemplateRaised, match=r"template memory limit of 300 MiB"):
        render(source, MESSAGES)
    # The same loop over a tenth of the items stays under the limit and renders.
    assert render(source.replace("10000000", "100000").replace("range(100)", "range(3)"), MESSAGES).text == "3"


def test_filters_on_constants_are_not_folded_at_compile_time() -> None:
    """jinja folds a filter on constants into the compiled code; ours run at render time, inside the budget, so a
    never-taken branch costs nothing and a taken one is refused."""
    hidden = "{% if false %}" + "{{ 'x'|center(15000000) ~ 'y'|center(15000000) }}" * 50 + "{% endif %}ok"
    env = _environment()
    code = env.compile(budget.guard_ast(env.parse(hidden)), raw=True)
    assert len(code) < 50_000, len(code)  # the 15M-character constants are not in it
    assert render(hidden, MESSAGES).text == "ok"
    with pytest.raises(TemplateRaised, match="over the render budget"):
        render(hidden.replace("if false", "if true"), MESSAGES)


@pytest.mark.parametrize("source,expected", [
    ("{{ (2**64) * (2**64) }}", str(2**128)),
    ("{{ 10 // 3 }} {{ 7 - 9 }} {{ 7 / 2 }} {{ 2 ** 10 }}", "3 -2 3.5 1024"),
    ("{{ [[1], [2]]|sum(start=[]) }} {{ [1, 2, 3]|sum }} {{ [{'n': 2}, {'n': 5}]|sum(attribute='n') }}", "[1, 2] 6 7"),
    ("{{ [3, 1, 2]|sort|join('-') }} {{ ['a', 'b']|map('upper')|list }}", "1-2-3 ['A', 'B']"),
    ("{{ {'a': [1, 'x']}|tojson }} {{ [1, 'x']|string }} {{ 'a<b'|e }}", '{"a": [1, "x"]} [1, \'x\'] a&lt;b'),
    ("{{ range(5)|batch(2)|list }} {{ 'ab'|center(6) }}|", "[[0, 1], [2, 3], [4]]   ab  |"),
])
def test_ordinary_uses_render_as_before(source: str, expected: str) -> None:
    assert render(source, MESSAGES).text == expected
