"""Signatures for state files the suite reads back: an HMAC per file, with a key that lives outside the run folder.

Ray Tune saves its experiment state as pickles (`tuner.pkl`, the searcher's and callbacks' states, trials'
`error.pkl`) and JSON holding cloudpickled objects; restoring it runs whatever those pickles say. A run folder
(or a shared `--storage`) may be writable by others, copied from elsewhere, or cut short by a full disk, so the
suite reads such a file only when its HMAC-SHA256, under a per-user key, is one that this user's runs recorded.

The key is 32 random bytes in `$BENCHMARK_STATE_KEY_FILE`, else `$XDG_CONFIG_HOME/drug-text-benchmark/state.key`
(`~/.config/...`), created on first use with mode 0600; a key file that others may read or write is refused.
A signature covers the file's name relative to its folder, the folder's own name, and its bytes: a file moved
to another name or another study does not verify, a folder moved or copied as a whole does.

What this protects against: someone who can write the run folder or the shared storage but cannot read the
user's key (another user, a copied folder from elsewhere, a damaged or truncated file). What it does not:
someone who can read the key (the same user, root), and replaying an older file that this user's run signed
earlier for the same name (it was the user's own state; a resumed study may then repeat trials).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from benchmark.core.errors import BenchmarkError

KEY_ENV = "BENCHMARK_STATE_KEY_FILE"
#: signatures kept per file name: older versions of a file stay valid for a while, because Ray Tune copies its
#: state to storage in a background thread (a driver killed between a save and the copy leaves the previous one)
KEEP_PER_FILE = 64
_DOMAIN = b"drug-text-benchmark state v1\0"


def key_path() -> Path:
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "drug-text-benchmark" / "state.key"


def load_key(create: bool = True) -> bytes:
    """The user's signing key (made on first use, mode 0600); a key others can read or write is an error."""
    path = key_path()
    if not path.exists():
        if not create:
            raise BenchmarkError(f"no state-signing key at {path}: this user has signed no run state here")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by another process just now
            return load_key(create=False)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise BenchmarkError(
            f"the state-signing key {path} may be read or changed by other users (mode {stat.filemode(info.st_mode)}, "
            f"owner uid {info.st_uid}); make it yours alone (chmod 600 {path}) or remove it (runs it signed then "
            f"cannot be resumed)"
        )
    text = path.read_text().strip()
    if len(text) < 64:
        raise BenchmarkError(f"the state-signing key {path} is damaged (too short); remove it and start runs again")
    return bytes.fromhex(text)


def file_mac(key: bytes, scope: str, name: str, data: bytes) -> str:
    """HMAC-SHA256 of one file: its folder's name (`scope`), its name inside the folder, its bytes."""
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    for part in (scope.encode(), name.encode()):
        mac.update(len(part).to_bytes(8, "little") + part)
    mac.update(data)
    return mac.hexdigest()


def manifest_mac(key: bytes, files: dict[str, list[str]]) -> str:
    body = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, _DOMAIN + b"manifest\0" + body, hashlib.sha256).hexdigest()


class Manifest:
    """The signatures of one folder's state files: {name: [HMACs, newest last]}, itself signed with the key."""

    def __init__(self, key: bytes, scope: str, files: dict[str, list[str]] | None = None):
        self.key, self.scope = key, scope
        self.files: dict[str, list[str]] = files or {}

    def add(self, name: str, data: bytes) -> bool:
        """Record `data` as a valid version of `name`; True when that is new."""
        mac = file_mac(self.key, self.scope, name, data)
        known = self.files.setdefault(name, [])
        if mac in known:
            return False
        known.append(mac)
        del known[:-KEEP_PER_FILE]
        return True

    def accepts(self, name: str, data: bytes) -> bool:
        mac = file_mac(self.key, self.scope, name, data)
        return any(hmac.compare_digest(mac, known) for known in self.files.get(name, ()))

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"version": 1, "files": self.files, "mac": manifest_mac(self.key, self.files)}, indent=1, sort_keys=True
        ).encode()

    @classmethod
    def from_bytes(cls, key: bytes, scope: str, data: bytes, where: str) -> Manifest:
        """A manifest read back, trusted only when its own MAC verifies (else a one-line error naming `where`)."""
        try:
            body = json.loads(data)
            files, mac = body["files"], body["mac"]
            ok = isinstance(files, dict) and all(
                isinstance(v, list) and all(isinstance(m, str) for m in v) for v in files.values()
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            ok, files, mac = False, {}, ""
        if not ok or not hmac.compare_digest(str(mac), manifest_mac(key, files)):
            raise BenchmarkError(
                f"the state signatures {where} are damaged or were not made with this user's key ({key_path()}); "
                "nothing in that folder is read: start the run again without --resume (or with another --output)"
            )
        return cls(key, scope, files)
