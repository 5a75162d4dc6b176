"""Sandboxed chat-template rendering that matches ``transformers``' ``apply_chat_template``.

Templates from the hub are untrusted code, so they only ever run in jinja2's immutable sandbox. The environment
mirrors what transformers sets up (``trim_blocks``, ``lstrip_blocks``, loop controls, the ``{% generation %}`` tag,
``tojson`` without HTML escaping, ``raise_exception``, ``strftime_now``, a guarded ``namespace``) so that what the lint
sees is exactly what the trainer and the inference server see. This module imports jinja2 only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from evalsuite.chat import budget, budget_filters
from evalsuite.chat.named import named_template, read_template_file, template_name
from evalsuite.errors import EvalsuiteError

# The names templates give the answering turn: ChatML/Llama/Phi "assistant", Gemma "model", ShareGPT-style "gpt" and
# "bot". The lint asks whether a header opens such a turn; the probe counts any role header as the start of a new turn.
ASSISTANT_WORDS = ("assistant", "model", "gpt", "bot")
ROLE_WORDS = ("system", "user", *ASSISTANT_WORDS)


class TemplateRaised(EvalsuiteError):
    """The template failed while rendering (or refused the conversation: see :class:`TemplateRefused`)."""


class TemplateRefused(TemplateRaised):
    """The template called ``raise_exception(...)``: it deliberately refuses this conversation (Gemma and system
    messages, strict user/assistant alternation). The lint reports this as ``template-error``."""


class _Refusal(jinja2.exceptions.TemplateError):
    pass


@dataclass(frozen=True)
class Rendered:
    text: str
    # Character spans produced inside ``{% generation %}`` blocks; empty when the template has none.
    generation_spans: tuple[tuple[int, int], ...] = ()


class _GenerationTracker(jinja2.ext.Extension):
    """Implements ``{% generation %}...{% endgeneration %}``: records the character span its body renders to."""

    tags = {"generation"}  # noqa: RUF012 (jinja's Extension declares it as a plain class attribute)

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        self.blocks: list[str] | None = None
        self.spans: list[tuple[int, int]] | None = None

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_track", [], [], None, None, lineno=lineno)
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _track(self, caller: Any) -> str:
        text = str(caller())
        if self.blocks is not None and self.spans is not None:
            start = sum(len(b) for b in self.blocks)
            self.spans.append((start, start + len(text)))
        return text


def _raise_exception(message: str) -> None:
    text = message if isinstance(message, str) else f"({type(message).__name__})"
    raise _Refusal(text if len(text) <= 500 else text[:500] + "...")


class _SafeNamespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore attributes, closing a route to interpreter internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _SafeNamespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _SafeNamespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


class _SafeDict:
    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        if args:
            budget.check_items(args[0], "put in a dict")
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        if args:
            budget.check_items(args[0], "put in a dict")
        return dict.fromkeys(*args, **kwargs)


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """Like transformers' sandbox, but an unsafe attribute access fails loudly instead of rendering as ''.

    Legitimate templates never touch ``__class__``/``__globals__``; one that does is an escape attempt, and the user
    should hear about it rather than train on a silently altered prompt.
    """

    # Size-checked before they run (see evalsuite.chat.budget); intercepted operators are also never folded into
    # constants at compile time, which is where `'x' * 3000000000` would otherwise allocate. Every arithmetic
    # operator is here: integer division and multiplication turn superlinear on wide integers.
    intercepted_binops = frozenset({"*", "**", "+", "%", "-", "/", "//"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+":
            return budget.add(left, right)
        budget.check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        args = budget.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        owner = value.__self__

        def checked(*args: Any, **kwargs: Any) -> Any:
            budget.check_format_call(owner, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked


def _environment() -> _StrictSandbox:
    env = _StrictSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTracker, jinja2.ext.loopcontrols],
        finalize=budget.finalize,
    )
    env.filters["tojson"] = budget_filters.tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = budget_filters.strftime_now
    env.globals["dict"] = _SafeDict()
    env.globals["namespace"] = _SafeNamespace
    env.globals["lipsum"] = budget_filters.lipsum
    env.globals[budget.LOOP_HOOK] = budget.loop
    env.globals[budget.CONCAT_HOOK] = budget.concat
    budget_filters.guard_filters(env.filters)
    return env


def _compile(env: _StrictSandbox, ast: jinja2.nodes.Template) -> jinja2.Template:
    """Compile a parsed template with the render budget's hooks planted (see evalsuite.chat.budget)."""
    return env.template_class.from_code(env, env.compile(budget.guard_ast(ast)), env.make_globals(None), None)


@lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template text (rendering 20k rows must not recompile)."""
    env = _environment()
    try:
        return _compile(env, env.parse(source))
    except jinja2.TemplateSyntaxError as e:
        if getattr(source, "is_file", False):  # a template file: FILE:LINE, as editors and CI annotations read it
            where = f"{getattr(source, 'origin', '')}:{e.lineno}: chat template"
        else:
            where = f"{template_name(source)}: line {e.lineno}:"
        raise EvalsuiteError(f"{where} syntax error: {e.message}") from None
    except RecursionError:
        raise EvalsuiteError(f"{template_name(source)}: nested too deeply to compile") from None


class ContentUseTracker:
    """Counts how often an instrumented template ran an expression that inspects message content."""

    def __init__(self) -> None:
        self.fired = 0

    def __call__(self, value: Any) -> Any:
        self.fired += 1
        return value


@lru_cache(maxsize=64)
def compile_instrumented(source: str) -> tuple[jinja2.Template, ContentUseTracker, int]:
    """The template with every content-inspecting expression wrapped in a counter (see ``evalsuite.chat.taint``).

    Used only to learn layouts from sentinel renders; its output is identical to :func:`compile_template`'s.
    Returns the template, its tracker and the number of instrumented expressions.
    """
    from evalsuite.chat.taint import MARKER, find_content_uses, instrument

    compile_template(source)  # syntax errors surface with the usual message
    env = _environment()
    tracker = ContentUseTracker()
    env.globals[MARKER] = tracker
    ast = env.parse(source)
    count = instrument(ast, find_content_uses(ast))
    return _compile(env, ast), tracker, count


@lru_cache(maxsize=64)
def template_names(source: str) -> frozenset[str]:
    """The names a template can read from a message (see ``evalsuite.chat.taint.referenced_names``)."""
    from evalsuite.chat.taint import referenced_names

    return referenced_names(compile_template(source).environment.parse(source))


def _tracker(template: jinja2.Template) -> _GenerationTracker:
    ext = template.environment.extensions[_GenerationTracker.identifier]
    assert isinstance(ext, _GenerationTracker)
    return ext


def has_generation_tags(source: str) -> bool:
    return "generation" in source and any(
        tok.type == "name" and tok.value == "generation"
        for tok in _lex_block_names(source)
    )


def _lex_block_names(source: str) -> Iterator[Any]:
    env = jinja2.Environment()
    prev_block_begin = False
    for tok in env.lexer.tokenize(source):
        if prev_block_begin:
            yield tok
        prev_block_begin = tok.type == "block_begin"


# transformers (``render_jinja_template``) copies every reasoning field under these names before rendering, so a
# template that reads ``thinking`` (gpt-oss) sees data written as ``reasoning_content`` and the other way round.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages as ``apply_chat_template`` hands them to the template: keys whose value is None dropped
    (OpenAI-style ``content: null``), and the reasoning fields aliased to each other."""
    out = []
    for m in messages:
        plain = {k: v for k, v in m.items() if v is not None}
        reasoning = next((plain[k] for k in REASONING_FIELDS if k in plain), None)
        if reasoning is not None:
            plain = {"thinking": reasoning, **plain, "reasoning_content": reasoning}
        out.append(plain)
    return out


def _context(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool,
             special_tokens: Mapping[str, str | None] | None, tools: Sequence[Mapping[str, Any]] | None,
             documents: Sequence[Mapping[str, Any]] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The template's variables: the named special tokens, then the caller's kwargs, then the conversation."""
    variables: dict[str, Any] = {k: v for k, v in (special_tokens or {}).items() if v is not None}
    variables.update(kwargs)
    return dict(messages=template_messages(messages), tools=None if tools is None else [dict(t) for t in tools],
                documents=None if documents is None else [dict(d) for d in documents],
                add_generation_prompt=add_generation_prompt, **variables)


def _blocks(template: jinja2.Template, context: dict[str, Any]) -> Iterator[str]:
    """The output blocks, from root_render_func as Template.render does, minus its traceback rewriting (only
    messages are kept) and its generator layer."""
    return template.root_render_func(template.new_context(context))


def _generate_tracked(template: jinja2.Template, context: dict[str, Any]) -> Rendered:
    """Render while recording the character spans of ``{% generation %}`` blocks."""
    tracker = _tracker(template)
    blocks: list[str] = []
    spans: list[tuple[int, int]] = []
    tracker.blocks, tracker.spans = blocks, spans
    total = 0
    try:
        for block in _blocks(template, context):
            total += len(block)
            budget.check_size(total, "an output")
            blocks.append(block)
    finally:
        tracker.blocks, tracker.spans = None, None
    return Rendered("".join(blocks), tuple(spans))


def _run(template: jinja2.Template, context: dict[str, Any], track_generation: bool, label: str) -> Rendered:
    """Run the template within the render budget; every way it can fail becomes a :class:`TemplateRaised` that
    names it (``label``)."""
    outer = budget.arm()
    try:
        if track_generation:
            return _generate_tracked(template, context)
        return Rendered(budget.join_output(_blocks(template, context)))
    except _Refusal as e:
        raise TemplateRefused(f"chat template raised: {e}") from None
    except budget.OverBudget as e:
        raise TemplateRaised(f"{label} {e}") from None
    except jinja2.exceptions.SecurityError as e:
        raise TemplateRaised(f"{label}: refused by the sandbox: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        raise TemplateRaised(f"{label} raised: {e}") from None
    except RecursionError:
        raise TemplateRaised(f"{label} failed: it recursed too deeply (a macro calling itself?)") from None
    # Anything else a template can make Python raise (1/0, range limits, bad arguments) is the template's error.
    except (TypeError, ValueError, AttributeError, LookupError, ArithmeticError, RuntimeError, MemoryError) as e:
        raise TemplateRaised(f"{label} failed: {type(e).__name__}: {e}") from None
    finally:
        budget.disarm(outer)


def render(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    special_tokens: Mapping[str, str | None] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    track_generation: bool = False,
    instrumented: bool = False,
    **kwargs: Any,
) -> Rendered:
    """Render ``messages`` the way ``tokenizer.apply_chat_template(..., tokenize=False)`` does.

    ``special_tokens`` are the tokenizer's named special tokens (``bos_token``, ``eos_token``, ...); templates read
    them as variables. ``tools`` is the row's tool list (JSON schemas), passed as ``tools=``. Raises
    :class:`TemplateRefused` when the template calls ``raise_exception`` and :class:`TemplateRaised` when it fails
    otherwise. ``instrumented`` renders the content-tracking variant.
    """
    template = compile_instrumented(source)[0] if instrumented else compile_template(source)
    context = _context(messages, add_generation_prompt, special_tokens, tools, documents, kwargs)
    return _run(template, context, track_generation, template_name(source))


# Our own ChatML template (the layout is a published convention; the text is ours).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _exists(p: Any) -> bool:
    try:
        return bool(p.exists())
    except (OSError, ValueError):  # a name too long for the filesystem: template text, not a path
        return False


def resolve_template(setting: str, jinja: str | None, tokenizer_template: str | None, where: str) -> str | None:
    """The template a config selects: ``tokenizer_default``, ``chatml``, ``jinja`` (file or text), or an axolotl
    template name. We do not ship copies of vendors' templates, so a name resolves to the tokenizer's own one."""
    from pathlib import Path

    if setting == "chatml":
        return CHATML
    if setting == "jinja":
        assert jinja is not None
        p = Path(jinja).expanduser()
        exists = "{" not in jinja and "\n" not in jinja and _exists(p)
        if ("{" not in jinja and p.suffix in (".jinja", ".j2", ".txt")) or exists:
            if not exists:
                raise EvalsuiteError(f"{where}: chat_template_jinja: no such file {jinja}")
            try:
                return read_template_file(p)
            except EvalsuiteError as e:  # a folder, a device, too big: named by the config key too
                raise EvalsuiteError(f"{where}: chat_template_jinja: {e}") from None
        return named_template(jinja, f"{where}: chat_template_jinja")
    if tokenizer_template is None and setting != "tokenizer_default":
        raise EvalsuiteError(f"{where}: chat_template: {setting!r} is not bundled with evalsuite and the tokenizer "
                             "has no template; set chat_template: jinja and chat_template_jinja: FILE")
    return tokenizer_template
