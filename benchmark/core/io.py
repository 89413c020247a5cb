"""Files the suite writes: where its cache lives, atomic writes, content hashes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from benchmark.core.errors import BenchmarkError, WriteFailed

CACHE_ENV = "BENCHMARK_CACHE"


def cache_dir() -> Path:
    """BENCHMARK_CACHE, else $XDG_CACHE_HOME/drug-text-benchmark, else ~/.cache/drug-text-benchmark."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drug-text-benchmark"


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file. The file gets
    the permissions a plain write would (0666 less the umask), not the temporary file's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WriteFailed(
            f"could not write {path} ({len(data) / 1e6:.1f} MB): {exc.strerror or exc}; {free_space(path.parent)} "
            "free there: free space or choose another folder"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_sqlite_file(path: Path, what: str, fix: str) -> None:
    """An existing sqlite file (a store the suite would trust) that cannot be read is named with `fix`, before
    anything opens it (a traceback from deep inside a library otherwise; an empty file silently reads as empty)."""
    if not path.exists():
        return
    problem = None
    if path.stat().st_size == 0:
        problem = "empty"
    else:
        try:  # read-write: a store left by a killed process has a hot journal that the first reader rolls back
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
                db.execute("select count(*) from sqlite_master").fetchone()
                verdict = db.execute("pragma quick_check").fetchone()[0]
            if verdict != "ok":
                problem = f"damaged: {verdict}"
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):  # locked: another process is writing it, so it is readable
                problem = f"not a readable database: {exc}"
        except sqlite3.DatabaseError as exc:
            problem = f"not a readable database: {exc}"
    if problem:
        raise BenchmarkError(f"{what} {path} is {problem}; {fix}")


def unwritable(path: Path) -> str | None:
    """Why a file or folder at `path` could not be written (created where it does not exist yet), or None: the
    nearest existing folder is checked, as nothing is created here."""
    path = Path(path).absolute()
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            if os.statvfs(parent).f_flag & os.ST_RDONLY:
                return f"{parent} is on a read-only file system"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{parent} is not writable (permission denied)"
            return None
    return f"no folder of {path} exists"


#: what a write that found no space says (the OS, SQLite)
_NO_SPACE = ("No space left on device", "database or disk is full")


def disk_full(exc: BaseException) -> str | None:
    """When `exc` (or what caused it) is a write that found no space (ENOSPC, sqlite's 'database or disk is
    full'), one line saying so, with the line of the error that says it; else None."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        text = str(seen)
        said = next((line.strip() for line in text.splitlines() if any(m in line for m in _NO_SPACE)), None)
        if said or (isinstance(seen, OSError) and seen.errno == errno.ENOSPC):
            return f"a write failed for lack of disk space ({said or f'{type(seen).__name__}: {text}'}"[:400] + ")"
        seen = seen.__cause__ or seen.__context__
    return None


def free_space(folder: Path) -> str:
    """'1.2 GB' free on the disk holding `folder` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return f"{shutil.disk_usage(candidate).free / 1e9:.1f} GB"
    return "unknown"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def item_digests(items: list[str]) -> list[str]:
    """One short sha256 per item: the identity of a single cached embedding row."""
    return [hashlib.sha256(item.encode()).hexdigest()[:20] for item in items]


def hash_items(items: list[str]) -> str:
    """Order-sensitive hash of a list of strings (what an embedding matrix is aligned to)."""
    digest = hashlib.sha256()
    for item in items:
        encoded = item.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:16]
