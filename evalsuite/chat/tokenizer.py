"""Read a tokenizer directory with the `tokenizers` library only (no transformers, no torch).

The lint must run in seconds on a laptop, so it reads ``tokenizer.json`` + ``tokenizer_config.json`` (+
``chat_template.jinja``/``chat_template.json``, where newer transformers save the template) itself. The trainer uses
the same object, so both see identical ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json, sha256_json, sha256_text

# transformers' SPECIAL_TOKENS_ATTRIBUTES: the names a chat template can read as variables.
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")



@dataclass(frozen=True)
class BackendAddedToken:
    """An added token as ``get_added_tokens_decoder`` gives it, for backends that stand in for a ``tokenizers``
    object (a GGUF's vocabulary, an endpoint's server-side tokenizer)."""

    content: str
    special: bool


@dataclass(frozen=True)
class BackendEncoding:
    """What ``encode`` gives, for the same stand-in backends: only the ids are read."""

    ids: list[int]

@dataclass
class TokenizerInfo:
    path: Path
    tokenizer: Any  # tokenizers.Tokenizer
    chat_template: str | None
    special: dict[str, str | None]
    config: dict[str, Any] = field(default_factory=dict)
    # Set when the backend could not be built exactly as transformers builds it (see tokenizer_compat).
    compat_note: str | None = None

    @property
    def eos_token(self) -> str | None:
        return self.special.get("eos_token")

    @property
    def bos_token(self) -> str | None:
        return self.special.get("bos_token")

    @property
    def pad_token(self) -> str | None:
        return self.special.get("pad_token")

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    @cached_property
    def added_tokens(self) -> dict[str, tuple[int, bool]]:
        """content -> (id, is_special) for every added token."""
        return {t.content: (i, bool(t.special)) for i, t in self.tokenizer.get_added_tokens_decoder().items()}

    @cached_property
    def special_ids(self) -> set[int]:
        return {i for i, special in self.added_tokens.values() if special}

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))

    def template_variables(self) -> dict[str, str | None]:
        """What transformers passes to the template: the named special tokens as strings."""
        return dict(self.special)

    def with_special(self, overrides: dict[str, str]) -> TokenizerInfo:
        """Apply the config's ``special_tokens`` (and --pad-token/--eos-token) as the trainer does with
        ``add_special_tokens``: a token missing from the vocabulary is added as a new special token."""
        from tokenizers import AddedToken

        special = dict(self.special)
        tokenizer = self.tokenizer
        missing = [t for t in overrides.values() if tokenizer.token_to_id(t) is None]
        if missing:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(tokenizer.to_str())  # never mutate a (possibly cached) shared backend
            tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        special.update(overrides)
        return TokenizerInfo(self.path, tokenizer, self.chat_template, special, self.config, self.compat_note)


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens as strings or as AddedToken dicts {"content": ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(path: Path, config: dict[str, Any]) -> str | None:
    from evalsuite.chat.named import named_template, read_template_file

    jinja_file = path / "chat_template.jinja"
    if jinja_file.exists():
        return read_template_file(jinja_file)
    json_file = path / "chat_template.json"
    if json_file.exists():
        data = _read_json(json_file)
        value = data.get("chat_template") if isinstance(data, dict) else None
    else:
        json_file = path / "tokenizer_config.json"
        value = config.get("chat_template")
    if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    if not isinstance(value, str) or not value.strip():
        return None  # an empty template is no template
    return named_template(value, f"{json_file}: chat_template")


_CACHE: dict[tuple[Any, ...], TokenizerInfo] = {}
_BACKENDS: dict[str, tuple[Any, str | None, str | None]] = {}  # file contents' digest -> backend_from_files' answer


def load_tokenizer(path: str | Path) -> TokenizerInfo:
    """Load ``path/tokenizer.json`` (a fast tokenizer) and its config. Errors name the file.

    Loads are cached per directory and file modification times (a Llama-3 tokenizer.json takes a second to parse);
    the returned object's ``special`` dict is a fresh copy, and the backend is never mutated after loading."""
    p = Path(path)
    stamp = tuple((f.name, f.stat().st_mtime_ns) for f in sorted(p.glob("*.json")) + sorted(p.glob("*.jinja"))) \
        if p.is_dir() else ()
    key = (str(p.resolve()), stamp)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = _load_tokenizer(p)
        while len(_CACHE) > 8:
            _CACHE.pop(next(iter(_CACHE)))
    return TokenizerInfo(hit.path, hit.tokenizer, hit.chat_template, dict(hit.special), hit.config, hit.compat_note)


def _load_tokenizer(path: Path) -> TokenizerInfo:
    from evalsuite.chat.tokenizer_compat import backend_from_files, class_defaults

    p = Path(path)
    if not p.is_dir():
        raise EvalsuiteError(f"{p}: no such tokenizer directory")
    tj = p / "tokenizer.json"
    if not tj.exists():
        raise EvalsuiteError(f"{p}: no tokenizer.json (evalsuite reads fast tokenizers; convert a slow one with "
                             "transformers' AutoTokenizer.from_pretrained(...).save_pretrained(...))")
    config = _read_json(p / "tokenizer_config.json")
    if not isinstance(config, dict):
        raise EvalsuiteError(f"{p / 'tokenizer_config.json'}: expected a JSON object")
    model_config = _read_json(p / "config.json")  # AutoTokenizer lets the model type pick the class too
    text, model_config = tj.read_text(encoding="utf-8"), model_config if isinstance(model_config, dict) else {}
    # Run dirs trained on one base carry byte-identical tokenizer files: a session of N adapters parses them once
    # (0.2 s each for Phi-3's). Backends are never mutated after loading, so sharing one is safe.
    key = sha256_json({"tokenizer.json": sha256_text(text), "config": config, "model_config": model_config})
    if key not in _BACKENDS:
        try:
            _BACKENDS[key] = backend_from_files(text, config, model_config)
        except Exception as e:  # the Rust side raises plain Exception subclasses
            raise EvalsuiteError(f"{tj}: cannot be read as a tokenizer: {e}") from None
        while len(_BACKENDS) > 8:
            _BACKENDS.pop(next(iter(_BACKENDS)))
    tok, cls, note = _BACKENDS[key]
    defaults = class_defaults(config, cls)
    special = {name: _token_text(config.get(name)) or defaults.get(name) for name in SPECIAL_NAMES}
    extra = _read_json(p / "special_tokens_map.json")
    if isinstance(extra, dict):
        for name in SPECIAL_NAMES:
            special[name] = special[name] or _token_text(extra.get(name))
    return TokenizerInfo(path=p, tokenizer=tok, chat_template=_chat_template(p, config), special=special,
                         config=config, compat_note=note)


def _read_json(path: Path) -> Any:
    return read_json(path) if path.exists() else {}


def from_transformers(hf_tokenizer: Any, chat_template: str | None, name: str) -> TokenizerInfo:
    """Wrap a loaded transformers fast tokenizer so the trainer encodes with the very same code as the lint."""
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EvalsuiteError(f"{name}: evalsuite needs a fast tokenizer (tokenizer.json); this one is slow-only")
    special = {n: getattr(hf_tokenizer, n, None) for n in SPECIAL_NAMES}
    special = {n: (v if isinstance(v, str) else None) for n, v in special.items()}
    return TokenizerInfo(path=Path(name), tokenizer=backend, chat_template=chat_template, special=special)
