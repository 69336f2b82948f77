"""Stored assessments: an embedded SQLite file holding each assessment document exactly as it was answered.

The document is stored as the canonical JSON bytes returned to the caller, so `GET /v1/assessments/{id}` gives
back the same bytes later, whatever happens to the data or the rules since.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assessments (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    dataset_version TEXT NOT NULL,
    dataset_hash TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    verdict TEXT NOT NULL,
    document BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS assessments_created ON assessments(created_at);
"""


def encode(doc: dict[str, Any]) -> bytes:
    """Canonical JSON of a document (sorted keys, UTF-8): what is stored is what is returned."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


class AssessmentStore:
    """SQLite-backed, append-only store of assessment documents; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as con, con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread, kept open: opening one costs more than the insert itself.
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30)
            self._local.con = con
        return con

    def put(self, doc: dict[str, Any]) -> bytes:
        """Store a new document; return the exact bytes stored."""
        body = encode(doc)
        with self._connect() as con:
            con.execute(
                "INSERT INTO assessments (id, created_at, dataset_version, dataset_hash, rules_version, verdict, document)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (doc["id"], doc["created_at"], doc["dataset_version"], doc["dataset_hash"], doc["rules_version"],
                 doc["verdict"], body),
            )
        return body

    def get(self, assessment_id: str) -> bytes | None:
        """The stored bytes of one assessment, or None."""
        row = self._connect().execute("SELECT document FROM assessments WHERE id = ?", (assessment_id,)).fetchone()
        return bytes(row[0]) if row else None

    def documents(self, batch: int = 500):
        """Every stored document as (id, bytes), oldest first, read in batches."""
        last = ""
        while True:
            rows = self._connect().execute(
                "SELECT id, document FROM assessments WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            for assessment_id, body in rows:
                yield assessment_id, bytes(body)
            last = rows[-1][0]

    def count(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM assessments").fetchone()[0])
