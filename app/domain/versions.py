"""The versioned dataset store: immutable versions on local disk, a current pointer, API keys and an audit log.

Layout under `root`:

    registry.sqlite3        versions, the current pointer, API keys (hashed) and the append-only audit log
    versions/<id>/          one folder per version: manzhouli.gpkg + landcover.tif, never changed once written
    CURRENT                 the current version id, rewritten atomically after every pointer change, so that
                            every worker process notices a publish with one stat() per request
    tmp/                    folders being written; anything left here after a crash is deleted at start-up

A version becomes visible only when its folder is complete and renamed into place and its row says `draft`; the
pointer moves in one SQLite transaction. A crash at any point leaves the current version intact and no
half-written version visible. SQLite's own locking (BEGIN IMMEDIATE) serialises writers, so two uploads at once
get two distinct ids and neither is lost.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from app.errors import Conflict, DataError, NotFound

ROLES = ("officer", "editor", "admin")  # each includes the ones before it
GPKG_NAME = "manzhouli.gpkg"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    parent TEXT,
    status TEXT NOT NULL CHECK (status IN ('writing', 'draft', 'published', 'abandoned')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    replaced_layers TEXT NOT NULL DEFAULT '[]',
    content_hash TEXT,
    dataset_id TEXT,
    report TEXT,
    approval_ref TEXT,
    published_at TEXT,
    published_by TEXT
);
CREATE TABLE IF NOT EXISTS pointer (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    version TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('officer', 'editor', 'admin')),
    key_hash TEXT UNIQUE NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
);
"""


@dataclass(frozen=True)
class Actor:
    """Who is acting: an API key's id, name and role, or the system itself."""

    key_id: str
    name: str
    role: str

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.key_id})"


SYSTEM = Actor("system", "system", "admin")


@dataclass(frozen=True)
class Version:
    """One row of the version registry."""

    id: str
    seq: int
    parent: str | None
    status: str
    created_at: str
    created_by: str
    note: str
    source: str
    replaced_layers: tuple[str, ...]
    content_hash: str | None
    dataset_id: str | None
    report: dict[str, Any] | None
    approval_ref: str | None
    published_at: str | None
    published_by: str | None

    def public(self) -> dict[str, Any]:
        """The row as JSON, without the report (which can be large)."""
        return {
            "id": self.id, "parent": self.parent, "status": self.status, "created_at": self.created_at,
            "created_by": self.created_by, "note": self.note, "source": self.source,
            "replaced_layers": list(self.replaced_layers), "content_hash": self.content_hash,
            "dataset_id": self.dataset_id, "approval_ref": self.approval_ref, "published_at": self.published_at,
            "published_by": self.published_by,
            "errors": len((self.report or {}).get("errors", [])), "warnings": len((self.report or {}).get("warnings", [])),
        }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class VersionStore:
    """The registry and the version folders under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions_dir = root / "versions"
        self.tmp_dir = root / "tmp"
        self.db_path = root / "registry.sqlite3"
        self.current_file = root / "CURRENT"
        for d in (root, self.versions_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA synchronous=FULL")
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database's write lock from its first statement."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextmanager
    def _flock(self, name: str, *, exclusive: bool, blocking: bool = True) -> Iterator[bool]:
        """An advisory file lock shared by every process using the store; yields whether it was acquired."""
        fd = os.open(self.root / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _audit(self, con: sqlite3.Connection, actor: Actor, action: str, *, from_version: str | None = None,
               to_version: str | None = None, **detail: Any) -> None:
        con.execute(
            "INSERT INTO audit (at, actor, role, action, from_version, to_version, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now(), actor.label, actor.role, action, from_version, to_version,
             json.dumps(detail, ensure_ascii=False, sort_keys=True)),
        )

    def path_of(self, version_id: str) -> Path:
        return self.versions_dir / version_id

    # -- start-up ------------------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Clean up after a crash: delete temp folders, mark versions that never finished as abandoned.

        Runs only when no process is writing a version (writers hold the "writers" lock shared), so a start-up
        never mistakes another process's upload in progress for a crash.
        """
        abandoned: list[str] = []
        with self._flock("writers", exclusive=True, blocking=False) as alone:
            if alone:
                for leftover in self.tmp_dir.iterdir():
                    shutil.rmtree(leftover, ignore_errors=True)
                with self._write() as con:
                    for row in con.execute("SELECT id FROM versions WHERE status = 'writing'").fetchall():
                        con.execute("UPDATE versions SET status = 'abandoned' WHERE id = ?", (row["id"],))
                        shutil.rmtree(self.path_of(row["id"]), ignore_errors=True)
                        self._audit(con, SYSTEM, "abandon", to_version=row["id"],
                                    reason="unfinished write found at start-up")
                        abandoned.append(row["id"])
        with self._flock("pointer", exclusive=True):
            current = self.current()
            if current and self.current_file_version() != current:
                self._write_current_file(current)
        return abandoned

    def bootstrap(self, dataset_dir: Path, content_hash: str, dataset_id: str) -> str | None:
        """Import a dataset folder as the first published version when the store is empty; return its id.

        Several worker processes start at once: the first to take the lock imports, the others find it done.
        """
        with self._flock("bootstrap", exclusive=True):
            if self.current() is not None:
                return None
            return self._bootstrap(dataset_dir, content_hash, dataset_id)

    def _bootstrap(self, dataset_dir: Path, content_hash: str, dataset_id: str) -> str:
        def copy(target: Path) -> None:
            for item in sorted(dataset_dir.iterdir()):
                if item.is_file() and item.suffix in (".gpkg", ".tif", ".json"):
                    shutil.copy2(item, target / item.name)

        version_id = self.create_version(SYSTEM, parent=None, note="嵌入式参考数据（初始版本）", source=str(dataset_dir.name),
                                         replaced_layers=[], writer=copy, content_hash=content_hash,
                                         dataset_id=dataset_id, report={"ok": True, "errors": [], "warnings": []})
        self.set_current(version_id, SYSTEM, action="bootstrap", require_clean=False)
        return version_id

    # -- versions ------------------------------------------------------------------------------------------------

    def create_version(self, actor: Actor, *, parent: str | None, note: str, source: str, replaced_layers: list[str],
                       writer: Callable[[Path], None], content_hash: str | None, dataset_id: str | None,
                       report: dict[str, Any] | None, approval_ref: str | None = None) -> str:
        """Allocate an id, let `writer` fill a private folder, move it into place, then make the row a draft."""
        with self._flock("writers", exclusive=False):
            with self._write() as con:
                seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions").fetchone()[0]
                version_id = f"v{seq}"
                con.execute(
                    "INSERT INTO versions (seq, id, parent, status, created_at, created_by, note, source, "
                    "replaced_layers) VALUES (?, ?, ?, 'writing', ?, ?, ?, ?, ?)",
                    (seq, version_id, parent, now(), actor.label, note, source, json.dumps(replaced_layers)),
                )
            staging = self.tmp_dir / f"{version_id}-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                writer(staging)
                for f in staging.iterdir():
                    _fsync_file(f)
                os.rename(staging, self.path_of(version_id))
                _fsync_dir(self.versions_dir)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                with self._write() as con:
                    con.execute("UPDATE versions SET status = 'abandoned' WHERE id = ?", (version_id,))
                    self._audit(con, actor, "abandon", to_version=version_id, reason="write failed")
                raise
            with self._write() as con:
                done = con.execute(
                    "UPDATE versions SET status = 'draft', content_hash = ?, dataset_id = ?, report = ?, "
                    "approval_ref = ? WHERE id = ? AND status = 'writing'",
                    (content_hash, dataset_id, json.dumps(report, ensure_ascii=False) if report is not None else None,
                     approval_ref, version_id),
                ).rowcount
                if done != 1:
                    raise DataError("数据版本写入被中断，请重新上传", detail=f"{version_id} no longer 'writing'")
                self._audit(con, actor, "upload", from_version=parent, to_version=version_id, note=note,
                            source=source, replaced_layers=replaced_layers,
                            errors=len((report or {}).get("errors", [])),
                            warnings=len((report or {}).get("warnings", [])))
        return version_id

    def get(self, version_id: str) -> Version:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM versions WHERE id = ? AND status IN ('draft', 'published')",
                              (version_id,)).fetchone()
        if row is None:
            raise NotFound(f"找不到数据版本 {version_id[:40]}", detail=f"version {version_id[:40]} not found")
        return _version(row)

    def list(self) -> list[Version]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM versions WHERE status IN ('draft', 'published') ORDER BY seq").fetchall()
        return [_version(r) for r in rows]

    def current(self) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT version FROM pointer WHERE one = 1").fetchone()
        return row["version"] if row else None

    def set_current(self, version_id: str, actor: Actor, *, action: str, require_clean: bool = True,
                    acknowledge_warnings: bool = False, note: str = "",
                    verify: Callable[[str], None] | None = None) -> str | None:
        """Make a version current in one transaction (publish or roll back); return the previous current id.

        `verify` (e.g. loading the version's catalog and checking its hash) runs before the pointer moves, so a
        version that cannot be served is never made current.
        """
        version = self.get(version_id)
        report = version.report or {}
        if require_clean and report.get("errors"):
            raise Conflict(f"版本 {version_id} 的校验报告有 {len(report['errors'])} 个错误，须修正后重新上传，不能发布",
                           detail=f"{version_id} has validation errors", errors=len(report["errors"]))
        if require_clean and report.get("warnings") and not acknowledge_warnings:
            raise Conflict(f"版本 {version_id} 的校验报告有 {len(report['warnings'])} 个警告，须确认（acknowledge_warnings）后才能发布",
                           detail=f"{version_id} has unacknowledged warnings", warnings=len(report["warnings"]))
        if action == "rollback" and version.status != "published":
            raise Conflict(f"版本 {version_id} 从未发布过，不能回滚到该版本；请先发布", detail="rollback to an unpublished version")
        if verify is not None:
            verify(version_id)
        # The pointer lock orders pointer moves across processes, so CURRENT is always rewritten in commit order.
        with self._flock("pointer", exclusive=True):
            with self._write() as con:
                row = con.execute("SELECT version FROM pointer WHERE one = 1").fetchone()
                previous = row["version"] if row else None
                if previous == version_id:
                    raise Conflict(f"版本 {version_id} 已是当前版本", detail="already current")
                if action == "publish" and version.parent != previous:
                    raise Conflict(
                        f"草稿 {version_id} 基于版本 {version.parent}，而当前版本已是 {previous}：其校验报告已不适用，"
                        f"请基于当前版本重新上传", detail=f"{version_id} parent {version.parent} != current {previous}",
                        parent=version.parent, current=previous)
                con.execute("INSERT INTO pointer (one, version, changed_at) VALUES (1, ?, ?) ON CONFLICT(one) DO "
                            "UPDATE SET version = excluded.version, changed_at = excluded.changed_at",
                            (version_id, now()))
                if version.status == "draft":
                    con.execute("UPDATE versions SET status = 'published', published_at = ?, published_by = ? "
                                "WHERE id = ?", (now(), actor.label, version_id))
                self._audit(con, actor, action, from_version=previous, to_version=version_id, note=note,
                            acknowledged_warnings=len(report.get("warnings", [])) if acknowledge_warnings else 0,
                            approval_ref=version.approval_ref)
            self._write_current_file(version_id)
        return previous

    def _write_current_file(self, version_id: str) -> None:
        tmp = self.root / f".CURRENT.{uuid.uuid4().hex}"
        tmp.write_text(version_id + "\n", encoding="utf-8")
        _fsync_file(tmp)
        os.replace(tmp, self.current_file)

    def current_file_version(self) -> str | None:
        """The version id the CURRENT file names (what other processes switch to)."""
        try:
            return self.current_file.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def current_marker(self) -> tuple[int, int] | None:
        """A cheap token that changes whenever the pointer file is replaced (inode and mtime)."""
        try:
            st = os.stat(self.current_file)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def check_integrity(self, version_id: str, computed_hash: str) -> None:
        """Refuse a version whose files no longer hash to what was recorded when it was written."""
        version = self.get(version_id)
        if version.content_hash and version.content_hash != computed_hash:
            raise DataError(f"数据版本 {version_id} 校验失败（内容哈希不符），数据可能已损坏，拒绝使用",
                            detail=f"{version_id}: hash {computed_hash} != recorded {version.content_hash}")

    # -- audit and keys ------------------------------------------------------------------------------------------

    def audit_log(self, limit: int = 500) -> list[dict[str, Any]]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def record(self, actor: Actor, action: str, **detail: Any) -> None:
        """Append an audit entry for a write that is not a version change (keys, exports)."""
        with self._write() as con:
            self._audit(con, actor, action, **detail)

    def create_key(self, name: str, role: str, actor: Actor) -> tuple[str, str]:
        """Create an API key; return (key id, the key itself — shown once, stored only as a hash)."""
        if role not in ROLES:
            raise Conflict(f"未知角色 {role}，可选：{', '.join(ROLES)}", detail=f"unknown role {role}")
        key_id = "k_" + secrets.token_hex(4)
        key = "mzl_" + secrets.token_urlsafe(32)
        with self._write() as con:
            con.execute("INSERT INTO api_keys (id, name, role, key_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                        (key_id, name, role, hash_key(key), now(), actor.label))
            self._audit(con, actor, "key_create", key_id=key_id, name=name, key_role=role)
        return key_id, key

    def register_key(self, key: str, name: str, role: str, actor: Actor) -> str | None:
        """Register a key given from outside (the bootstrap admin key) unless already known; return its id."""
        with self._write() as con:
            if con.execute("SELECT 1 FROM api_keys WHERE key_hash = ?", (hash_key(key),)).fetchone():
                return None
            key_id = "k_" + secrets.token_hex(4)
            con.execute("INSERT INTO api_keys (id, name, role, key_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                        (key_id, name, role, hash_key(key), now(), actor.label))
            self._audit(con, actor, "key_create", key_id=key_id, name=name, key_role=role, via="bootstrap")
        return key_id

    def revoke_key(self, key_id: str, actor: Actor) -> None:
        with self._write() as con:
            cur = con.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now(), key_id))
            if cur.rowcount == 0:
                raise NotFound(f"找不到有效的密钥 {key_id[:40]}", detail=f"key {key_id[:40]} not found or revoked")
            self._audit(con, actor, "key_revoke", key_id=key_id)

    def keys(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT id, name, role, created_at, created_by, revoked_at FROM api_keys ORDER BY created_at")
            return [dict(r) for r in rows.fetchall()]

    def actor_for(self, key: str) -> Actor | None:
        """The actor an API key stands for, or None if it is unknown or revoked."""
        with closing(self._connect()) as con:
            row = con.execute("SELECT id, name, role FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                              (hash_key(key),)).fetchone()
        return Actor(row["id"], row["name"], row["role"]) if row else None


def _version(row: sqlite3.Row) -> Version:
    return Version(
        id=row["id"], seq=row["seq"], parent=row["parent"], status=row["status"], created_at=row["created_at"],
        created_by=row["created_by"], note=row["note"], source=row["source"],
        replaced_layers=tuple(json.loads(row["replaced_layers"] or "[]")), content_hash=row["content_hash"],
        dataset_id=row["dataset_id"], report=json.loads(row["report"]) if row["report"] else None,
        approval_ref=row["approval_ref"], published_at=row["published_at"], published_by=row["published_by"],
    )


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
