"""Where filter results are kept between runs: SQLite keyed by (filter fingerprint, caption)."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/sd_adverb_lora/adverbs` (default `~/.cache/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sd_adverb_lora" / "adverbs"


class FilterCache:
    """Filter results in SQLite, keyed by a hash of (filter fingerprint, caption text)."""

    def __init__(self, directory, fingerprint: str):
        self.path = Path(directory) / "adverbs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prefix = fingerprint + "\x00"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _connect(self):
        return sqlite3.connect(self.path, timeout=60)

    def _key(self, text: str) -> str:
        return hashlib.blake2b((self._prefix + text).encode("utf-8"), digest_size=16).hexdigest()

    def get_many(self, texts) -> dict[str, tuple]:
        keys = {self._key(t): t for t in texts}
        found: dict[str, tuple] = {}
        items = list(keys)
        with self._connect() as db:
            for i in range(0, len(items), 900):  # SQLite's bound-parameter limit
                part = items[i:i + 900]
                rows = db.execute(f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(part))})", part)
                for key, value in rows:
                    text, spans, kept = json.loads(value)
                    found[keys[key]] = (text, tuple(tuple(s) for s in spans), tuple(tuple(k) for k in kept))
        return found

    def put_many(self, pairs) -> None:
        rows = [(self._key(t), json.dumps([r[0], [list(s) for s in r[1]], [list(k) for k in r[2]]], ensure_ascii=False))
                for t, r in pairs]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", rows)
