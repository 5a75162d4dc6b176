"""Files: content hashes for provenance (manifests, caches), the one atomic writer, the one JSON reader whose
errors name the file, and the checks every output path passes before a command starts its work.

Every file evalsuite writes (manifests, generation configs, results, baselines, the generation cache, reports) goes
through :func:`atomic_write_text`: a temp file in the same folder, fsync, ``os.replace``, then fsync of the folder,
so a crash leaves the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from evalsuite.config.limits import InputLimit, loads_json
from evalsuite.errors import EvalsuiteError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over several files (names and contents), order-independent."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def read_text(path: Path, what: str = "", folder: str = "") -> str:
    """Read a UTF-8 text file; each failure is one :class:`EvalsuiteError` naming the file and, when given, what it
    was for (``PATH: no such WHAT file``, ``PATH: WHAT is not UTF-8 text (byte N)``, ``PATH: cannot read the WHAT:
    ...``). ``folder``: the message for a folder where a file was expected (default: a read error)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalsuiteError(f"{path}: no such {what + ' ' if what else ''}file") from None
    except UnicodeDecodeError as e:
        raise EvalsuiteError(f"{path}: {what + ' is ' if what else ''}not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        if folder and isinstance(e, IsADirectoryError):
            raise EvalsuiteError(f"{path}: {folder}") from None
        raise EvalsuiteError(f"{path}: cannot read{' the ' + what if what else ''}: {e.strerror or e}") from None


def read_json(path: Path, what: str = "JSON", missing: str | None = None) -> Any:
    """Parse a JSON file. Each failure is one :class:`EvalsuiteError` naming the file: ``missing`` (default
    ``PATH: no such WHAT file``) when it does not exist, ``PATH: cannot read: ...``, ``PATH:LINE: invalid JSON: ...``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalsuiteError(missing or f"{path}: no such {what} file") from None
    except UnicodeDecodeError as e:
        raise EvalsuiteError(f"{path}: cannot read: {e}") from None
    except OSError as e:  # a folder, permissions, a symlink loop: the reason without Python's repr of the path
        raise EvalsuiteError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return loads_json(text)
    except json.JSONDecodeError as e:
        raise EvalsuiteError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except InputLimit as e:
        raise EvalsuiteError(f"{path}: {e}") from None


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the whole new one, never half."""
    target = Path(path)
    special = special_file(target)
    if special:  # os.replace would swap a device node or FIFO for a file (as root, /dev/full became a report)
        raise EvalsuiteError(f"{target}: is {special}, not a regular file; refusing to write to it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, _file_mode(target))  # mkstemp makes 0600; keep what a plain open() would give
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # a failed write does not say which file: say it
            raise OSError(e.errno, e.strerror or str(e), str(target)) from e
        raise
    _fsync_dir(target.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON through :func:`atomic_write_text`."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; not possible on every platform, harmless to skip there."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# errno values that mean "this cannot be written here" rather than a bug: full disk, quota, read-only, permissions.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


# How libraries that do not raise OSError say a write failed: torch's zip writer (a RuntimeError) and safetensors'
# Rust writer (SafetensorError, an Exception: "I/O error: No space left on device (os error 28)").
_WRITER_MARKS = ("PytorchStreamWriter", "inline_container", "file write failed")
_IO_MARKS = (*(f"(os error {n})" for n in sorted(WRITE_ERRNOS)), "StorageFull", "No space left on device")


def write_failure(e: BaseException) -> str | None:
    """``FILE: No space left on device`` when ``e`` is a failed write, else None. torch's zip writer and safetensors
    report a full disk with errors of their own, so those are recognised too."""
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return f"{e.filename}: {os.strerror(e.errno)}" if e.filename else os.strerror(e.errno)
    text = str(e)
    first = text.splitlines()[0][:160] if text else type(e).__name__
    if isinstance(e, RuntimeError) and any(m in text for m in _WRITER_MARKS):
        return f"a file could not be written ({first}); is the disk full?"
    if type(e).__name__ == "SafetensorError" and any(m in text for m in _IO_MARKS):
        return f"a safetensors file could not be written ({first})"
    return None


# What an existing file must look like for an output of each kind to replace it (evalsuite writes each of these):
# a report replaces a report, a results file a results file. Anything else (weights, a config, someone's notes) is
# the user's and stays. An empty file holds nothing to lose.
OutputKind = Literal["html", "markdown", "results", "gguf"]
KIND_NAMES: dict[str, str] = {"html": "an HTML report", "markdown": "a Markdown file", "results": "a results file",
                              "gguf": "a GGUF file"}
MARKDOWN_SUFFIXES = (".md", ".markdown", ".txt")
_SNIFF = 1 << 16  # bytes read from an existing file to tell its kind


def resolve_path(path: str | os.PathLike[str], what: str = "path") -> Path:
    """``path`` made absolute with its links followed; a symlink loop is one :class:`EvalsuiteError`, not Python's
    ``RuntimeError`` (3.11) or ``OSError(ELOOP)`` (3.13)."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as e:
        if isinstance(e, RuntimeError) or e.errno == errno.ELOOP:
            raise EvalsuiteError(f"{path}: {what} is a symlink loop") from None
        raise EvalsuiteError(f"{path}: {what}: {e.strerror or e}") from None


def special_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a folder (links followed): ``a character
    device`` (/dev/full, /dev/null), ``a FIFO``, ``a socket``, ``a block device``; else None. Writing there (or, as
    root, renaming a file over it) is never what the user meant."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def looks_like(path: Path, kind: OutputKind) -> bool:
    """Whether the existing regular file ``path`` is of ``kind`` (read from its first bytes, never parsed whole)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF)
    except OSError:
        return False
    if not head.strip():
        return True
    if kind == "gguf":
        return head.startswith(b"GGUF")
    if b"\0" in head:
        return False
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if kind == "html":
        return text[:15].lower().startswith(("<!doctype html", "<html"))
    if kind == "markdown":
        return path.suffix.lower() in MARKDOWN_SUFFIXES or text.startswith("# ")
    return text.startswith("{") and '"schema_version"' in text[:4096]  # results (and baselines)


def check_output_path(path: str | os.PathLike[str], what: str = "output file", *,
                      inputs: Iterable[str | os.PathLike[str]] = (),
                      protected_dirs: Iterable[str | os.PathLike[str]] = (),
                      kind: OutputKind | None = None) -> Path:
    """Refuse, before any work, an output file that cannot or must not be written: a folder, a special file
    (/dev/full, a FIFO, a socket), a symlink loop, a path under a file, a place we cannot create files in, one of the
    command's inputs, a file inside a protected folder (a run dir being probed, a base model folder), or an existing
    file that is not of the output's ``kind`` (a report never replaces weights). Creates nothing. Returns the path."""
    p = Path(path)
    resolved = resolve_path(p, what)
    if p.is_dir():
        raise EvalsuiteError(f"{p}: {what} is a folder; give a file name")
    special = special_file(p)
    if special:
        raise EvalsuiteError(f"{p}: {what} is {special}, not a regular file; refusing to write to it")
    if resolved in {resolve_path(i, "input") for i in inputs}:
        raise EvalsuiteError(f"{p}: {what} is one of the inputs; refusing to overwrite it")
    for d in protected_dirs:
        folder = resolve_path(d, "folder")
        if folder in resolved.parents:
            raise EvalsuiteError(f"{p}: {what} is inside the run dir or model folder {d}, which this command "
                                 "reads; refusing to write into it (choose a path outside)")
    if kind is not None and resolved.is_file() and not looks_like(resolved, kind):
        raise EvalsuiteError(f"{p}: {what}: exists and is not {KIND_NAMES[kind]}; refusing to replace it (move it "
                             "away or choose another name)")
    ancestor = next(a for a in resolved.parents if a.exists())
    if not ancestor.is_dir():
        raise EvalsuiteError(f"{p}: {what} is under {ancestor}, which is a file")
    try:  # the only reliable test (root passes os.access everywhere): make a file there, then remove it
        fd, probe = tempfile.mkstemp(prefix=".evalsuite-probe.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise EvalsuiteError(f"{p}: cannot write the {what} in {ancestor}: {e.strerror or e}") from None
    return p


def remove_if_empty(folder: Path, markers: Iterable[str] = ()) -> None:
    """Remove a folder a failed command created, when nothing was written into it but the ``markers`` it wrote."""
    with contextlib.suppress(OSError):
        names = set(markers)
        if all(p.name in names and p.is_file() for p in folder.iterdir()):
            for name in names:
                (folder / name).unlink(missing_ok=True)
        folder.rmdir()  # only ever removes an empty folder
