"""The version store: immutable versions, an atomic pointer, crash recovery, keys and an append-only audit log."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from app.domain.versions import SYSTEM, Actor, VersionStore, hash_key
from app.errors import Conflict, DataError, NotFound

ROOT = Path(__file__).resolve().parents[2]


def _write(content: str):
    def writer(folder: Path) -> None:
        (folder / "manzhouli.gpkg").write_text(content)

    return writer


def _new(store: VersionStore, content: str = "x", report=None, parent=None) -> str:
    return store.create_version(SYSTEM, parent=parent, note="n", source="s", replaced_layers=["red_line"],
                                writer=_write(content), content_hash="h-" + content, dataset_id="d",
                                report=report or {"ok": True, "errors": [], "warnings": []})


def test_versions_get_sequential_ids_and_immutable_folders(tmp_path):
    store = VersionStore(tmp_path)
    a, b = _new(store, "a"), _new(store, "b")
    assert (a, b) == ("v1", "v2")
    assert (store.path_of(a) / "manzhouli.gpkg").read_text() == "a"
    assert [v.id for v in store.list()] == ["v1", "v2"] and all(v.status == "draft" for v in store.list())
    assert store.current() is None


def test_publish_moves_the_pointer_and_rollback_moves_it_back(tmp_path):
    store = VersionStore(tmp_path)
    a = _new(store, "a")
    b = _new(store, "b", parent=a)
    assert store.set_current(a, SYSTEM, action="publish") is None
    assert store.set_current(b, SYSTEM, action="publish") == a
    assert store.current() == b and store.current_file.read_text().strip() == b
    assert store.set_current(a, SYSTEM, action="rollback") == b
    assert store.current() == a
    assert {v.id: v.status for v in store.list()} == {a: "published", b: "published"}
    with pytest.raises(Conflict):
        store.set_current(a, SYSTEM, action="rollback")  # already current


def test_a_draft_built_on_an_older_version_cannot_be_published(tmp_path):
    """Its report was computed against its parent: publishing it now would skip the checks (e.g. 面积不减少)."""
    store = VersionStore(tmp_path)
    a = _new(store, "a")
    store.set_current(a, SYSTEM, action="publish")
    b, c = _new(store, "b", parent=a), _new(store, "c", parent=a)
    store.set_current(b, SYSTEM, action="publish")
    with pytest.raises(Conflict) as err:
        store.set_current(c, SYSTEM, action="publish")
    assert "重新上传" in err.value.message_zh and err.value.context["current"] == b
    assert store.current() == b


def test_publish_refuses_errors_and_unacknowledged_warnings_and_rollback_to_a_draft(tmp_path):
    store = VersionStore(tmp_path)
    bad = _new(store, "bad", report={"ok": False, "errors": [{"code": "overlap"}], "warnings": []})
    warn = _new(store, "warn", report={"ok": True, "errors": [], "warnings": [{"code": "unit_added"}]})
    with pytest.raises(Conflict) as err:
        store.set_current(bad, SYSTEM, action="publish")
    assert "错误" in err.value.message_zh
    with pytest.raises(Conflict) as err:
        store.set_current(warn, SYSTEM, action="publish")
    assert "警告" in err.value.message_zh
    with pytest.raises(Conflict):
        store.set_current(warn, SYSTEM, action="rollback")
    store.set_current(warn, SYSTEM, action="publish", acknowledge_warnings=True)
    assert store.current() == warn
    entry = store.audit_log()[0]
    assert entry["action"] == "publish" and entry["detail"]["acknowledged_warnings"] == 1


def test_a_failed_verification_leaves_the_pointer_where_it_was(tmp_path):
    store = VersionStore(tmp_path)
    a, b = _new(store, "a"), _new(store, "b")
    store.set_current(a, SYSTEM, action="publish")

    def verify(version_id):
        raise DataError("坏数据", detail="corrupt")

    with pytest.raises(DataError):
        store.set_current(b, SYSTEM, action="publish", verify=verify)
    assert store.current() == a and store.get(b).status == "draft"


def test_a_failing_writer_leaves_no_visible_version(tmp_path):
    store = VersionStore(tmp_path)

    def broken(folder: Path) -> None:
        (folder / "manzhouli.gpkg").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.create_version(SYSTEM, parent=None, note="", source="", replaced_layers=[], writer=broken,
                             content_hash=None, dataset_id=None, report=None)
    assert store.list() == []
    assert not any(store.versions_dir.iterdir()) and not any(store.tmp_dir.iterdir())
    with pytest.raises(NotFound):
        store.get("v1")


def test_concurrent_uploads_never_lose_one(tmp_path):
    store = VersionStore(tmp_path)
    ids: list[str] = []
    errors: list[Exception] = []

    def upload(i: int) -> None:
        try:
            ids.append(_new(VersionStore(tmp_path), f"c{i}"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(ids, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 13)]
    contents = {(store.path_of(v) / "manzhouli.gpkg").read_text() for v in ids}
    assert contents == {f"c{i}" for i in range(12)}


def test_integrity_check_refuses_a_changed_hash(tmp_path):
    store = VersionStore(tmp_path)
    a = _new(store, "a")
    store.check_integrity(a, "h-a")
    with pytest.raises(DataError) as err:
        store.check_integrity(a, "something-else")
    assert "损坏" in err.value.message_zh


def test_keys_are_stored_hashed_and_roles_nest(tmp_path):
    store = VersionStore(tmp_path)
    key_id, key = store.create_key("张三", "editor", SYSTEM)
    with sqlite3.connect(store.db_path) as con:
        stored = con.execute("SELECT key_hash FROM api_keys WHERE id = ?", (key_id,)).fetchone()[0]
        assert stored == hash_key(key) and key not in str(con.execute("SELECT * FROM api_keys").fetchall())
    actor = store.actor_for(key)
    assert actor == Actor(key_id, "张三", "editor")
    assert actor.allows("officer") and actor.allows("editor") and not actor.allows("admin")
    store.revoke_key(key_id, SYSTEM)
    assert store.actor_for(key) is None
    assert store.register_key("x" * 30, "boot", "admin", SYSTEM) is not None
    assert store.register_key("x" * 30, "boot", "admin", SYSTEM) is None  # idempotent across restarts


def test_the_audit_log_is_append_only(tmp_path):
    store = VersionStore(tmp_path)
    a = _new(store, "a")
    store.set_current(a, SYSTEM, action="publish", note="首次发布")
    log = store.audit_log()
    assert [e["action"] for e in log] == ["publish", "upload"]
    assert log[0]["to_version"] == a and log[0]["detail"]["note"] == "首次发布" and log[0]["actor"] == "system (system)"
    with sqlite3.connect(store.db_path) as con:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("UPDATE audit SET action = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM audit")


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from app.domain import versions
    from app.domain.versions import SYSTEM, VersionStore

    where = sys.argv[2]
    store = VersionStore(Path(sys.argv[1]))
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if where == "upload-writing":
        def writer(folder):
            (folder / "manzhouli.gpkg").write_text("half")
            die()
        store.create_version(SYSTEM, parent="v1", note="", source="", replaced_layers=[], writer=writer,
                             content_hash=None, dataset_id=None, report=None)
    elif where == "publish-in-transaction":
        versions.VersionStore._audit = die      # dies between the pointer UPDATE and COMMIT
        store.set_current("v2", SYSTEM, action="publish")
    elif where == "publish-after-commit":
        versions.VersionStore._write_current_file = die   # dies after COMMIT, before CURRENT is rewritten
        store.set_current("v2", SYSTEM, action="publish")
""")


@pytest.mark.parametrize("where, expected", [
    ("upload-writing", "v1"), ("publish-in-transaction", "v1"), ("publish-after-commit", "v2"),
])
def test_a_process_killed_mid_write_leaves_a_consistent_store(tmp_path, where, expected):
    store = VersionStore(tmp_path / "store")
    v1 = _new(store, "one")
    v2 = _new(store, "two", parent=v1)
    store.set_current(v1, SYSTEM, action="publish")
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT.format(root=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "store"), where], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    reopened = VersionStore(tmp_path / "store")
    abandoned = reopened.recover()
    assert reopened.current() == expected
    assert reopened.current_file.read_text().strip() == expected
    assert [v.id for v in reopened.list()] == [v1, v2]  # no half-written version is visible
    assert not any(reopened.tmp_dir.iterdir())
    if where == "upload-writing":
        assert abandoned == ["v3"] and not reopened.path_of("v3").exists()
        assert reopened.audit_log()[0]["action"] == "abandon"
    assert os.listdir(reopened.path_of(expected)) == ["manzhouli.gpkg"]


def test_recovery_at_start_up_leaves_an_upload_in_progress_alone(tmp_path):
    store = VersionStore(tmp_path)
    started, release = threading.Event(), threading.Event()
    result: list[str] = []

    def slow(folder: Path) -> None:
        (folder / "manzhouli.gpkg").write_text("slow")
        started.set()
        release.wait(10)

    def upload() -> None:
        result.append(VersionStore(tmp_path).create_version(
            SYSTEM, parent=None, note="", source="", replaced_layers=[], writer=slow, content_hash="h",
            dataset_id="d", report={"ok": True, "errors": [], "warnings": []}))

    t = threading.Thread(target=upload)
    t.start()
    assert started.wait(10)
    assert VersionStore(tmp_path).recover() == []  # another process starting up meanwhile
    release.set()
    t.join()
    assert result == ["v1"] and store.get("v1").status == "draft"
    assert (store.path_of("v1") / "manzhouli.gpkg").read_text() == "slow"


def test_workers_starting_together_import_the_seed_once(tmp_path):
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "manzhouli.gpkg").write_text("seed")
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(
        VersionStore(tmp_path / "store").bootstrap(seed, "h", "d"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = VersionStore(tmp_path / "store")
    assert sorted(r for r in results if r) == ["v1"] and results.count(None) == 3
    assert [v.id for v in store.list()] == ["v1"] and store.current() == "v1"
