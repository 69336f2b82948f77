"""PostGIS side of the benchmark: the service's point lookup and 10 ha site query in PostGIS with GiST indexes.

Where PostgreSQL and PostGIS are installed, a throwaway cluster is created in a temporary folder (owned by the
`postgres` user when running as root), listening on a Unix socket in that folder only, no TCP. It runs with
fsync, synchronous_commit and full_page_writes off: it is written once, then only read, and deleted at the end.

The control units and the red-line patches of the service's catalog are loaded twice: one row per unit or patch
(EPSG:4548), and cut by `ST_Subdivide` into pieces of at most 256 vertices, the piece size of the service's own
index (`app.domain.spatial.PIECE_VERTICES`); both with GiST indexes. Each query is one round trip over a
persistent psycopg connection with a prepared statement (run with its generic plan: see PLAN_CACHE_MODE), and
its answer is checked against the service's.

    python -m scripts.bench_postgis [--points N] [--sites N] [--seed N]

Needs `apt-get install -y --no-install-recommends postgresql-15-postgis-3` (or another version's package) and
`pip install -e '.[bench]'` (psycopg). Without them `unavailable()` says what is missing.
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import shapely

from app.domain.spatial import BOUNDARY_TOLERANCE_M, MIN_OVERLAP_M2, PIECE_VERTICES, Touch

ROOT = Path(__file__).resolve().parents[1]
STORAGE_EPSG = 4490  # CGCS2000 lon/lat: the service's input
METRIC_EPSG = 4548  # CGCS2000 / Gauss-Krüger CM 117°E: areas and distances
DISTANCE_TOLERANCE_M = 0.01  # the service rounds distances to 0.01 m
AREA_TOLERANCE_M2 = 0.01
VARIANTS = {
    "whole": "one row per unit / patch",
    "subdivided": f"ST_Subdivide(geom, {PIECE_VERTICES}) pieces",
}
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "port": "5432",  # the socket's name only: it lives in our own folder
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "10",
    "shared_buffers": "64MB",
}
USER = "bench"
# With the default (auto), PostgreSQL plans these prepared statements anew on every call: its custom plans are
# estimated cheaper than the generic one, so it never switches. The generic plan uses the same GiST index scans.
PLAN_CACHE_MODE = "force_generic_plan"


class PostGISUnavailable(RuntimeError):
    """PostgreSQL or PostGIS cannot be used on this machine; the message says why, in one line."""


# ---------------------------------------------------------------------------------------------------------------
# Finding PostgreSQL and PostGIS


def find_bindir() -> Path | None:
    """The bin folder of a PostgreSQL server installation (initdb, pg_ctl, postgres), or None."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)  # /usr/local/bin/initdb is a link into the real folder
    pg_config = shutil.which("pg_config")
    if pg_config:
        proc = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
        if proc.returncode == 0 and proc.stdout.strip():
            candidates.append(Path(proc.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: ours, or `postgres` when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def static_problem() -> str | None:
    """Why PostGIS cannot be used, from what is installed (no server started), or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -c constraints.txt -e '.[bench]'"
    bindir = find_bindir()
    if bindir is None:
        return "no PostgreSQL server: initdb, pg_ctl and postgres are not on PATH nor in /usr/lib/postgresql/*/bin"
    if server_user() is None:
        return "running as root and there is no 'postgres' user to run the server as"
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        proc = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10)
        control = Path(proc.stdout.strip()) / "extension" / "postgis.control"
        if proc.returncode == 0 and not control.is_file():
            return f"PostGIS is not installed for the PostgreSQL server in {bindir}: no {control}"
    return None


def unavailable(probe: bool = True) -> str | None:
    """None when a throwaway cluster can be started and PostGIS created in it, else the reason in one line.

    With `probe=False` only what is installed is checked (no server is started: milliseconds instead of 1–3 s).
    """
    problem = static_problem()
    if problem or not probe:
        return problem
    try:
        with PostGISServer():
            return None
    except PostGISUnavailable as exc:
        return str(exc)


# ---------------------------------------------------------------------------------------------------------------
# The throwaway server


def _one_line(text: str, limit: int = 300) -> str:
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return (lines[-1] if lines else "")[:limit]


class PostGISServer:
    """A throwaway PostgreSQL cluster with PostGIS, in a temporary folder; stopped and deleted on exit.

    `with PostGISServer() as server:` raises PostGISUnavailable (with the reason) when it cannot be started.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir
        self.tmp: Path | None = None
        self.version = ""
        self.start_s = 0.0
        self._started = False
        self._old_sigterm: Any = None

    @property
    def datadir(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    def _run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        user = server_user()
        assert user is not None and self.tmp is not None
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if os.geteuid() == 0 else {}
        # a new session: a Ctrl-C in the terminal reaches us, and we stop the server, not the server directly
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=self.tmp,
                              start_new_session=True, env={**os.environ, "LC_ALL": "C"}, **as_user)

    def __enter__(self) -> "PostGISServer":
        problem = static_problem()
        if problem:
            raise PostGISUnavailable(problem)
        self.bindir = self.bindir or find_bindir()
        assert self.bindir is not None
        self._catch_sigterm()
        t0 = time.perf_counter()
        try:
            self._start()
            with self.connect() as conn:
                try:
                    conn.execute("CREATE EXTENSION postgis")
                except Exception as exc:  # noqa: BLE001 - any failure here means no PostGIS
                    raise PostGISUnavailable(f"CREATE EXTENSION postgis failed: {_one_line(str(exc))}") from exc
                full = conn.execute("SELECT postgis_full_version()").fetchone()[0]
                server = conn.execute("SHOW server_version").fetchone()[0]
                srids = {r[0] for r in conn.execute("SELECT srid FROM spatial_ref_sys WHERE srid = ANY(%s)",
                                                    ([STORAGE_EPSG, METRIC_EPSG],))}
            missing = {STORAGE_EPSG, METRIC_EPSG} - srids
            if missing:
                raise PostGISUnavailable(f"spatial_ref_sys lacks EPSG:{', EPSG:'.join(map(str, sorted(missing)))}")
            self.version = short_version(full, server)
        except BaseException:
            self._cleanup()
            raise
        self.start_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cleanup()

    def _catch_sigterm(self) -> None:
        """Turn SIGTERM into SystemExit while the server runs, so that `__exit__` still stops and deletes it."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            def stop(signum: int, frame: Any) -> None:
                raise SystemExit(128 + signum)

            self._old_sigterm = signal.signal(signal.SIGTERM, stop)

    def _cleanup(self) -> None:
        """Stop the server and delete its folder; a Ctrl-C or SIGTERM meanwhile takes effect once that is done."""
        if threading.current_thread() is not threading.main_thread():
            self._stop_and_delete()
            return
        pending: list[int] = []
        held = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop_and_delete()
        finally:
            if self._old_sigterm is not None:
                held[signal.SIGTERM] = self._old_sigterm
                self._old_sigterm = None
            for sig, handler in held.items():
                signal.signal(sig, handler)
        if signal.SIGINT in pending:
            raise KeyboardInterrupt
        if pending:
            raise SystemExit(128 + pending[0])

    def _start(self) -> None:
        user = server_user()
        assert user is not None and self.bindir is not None
        self.tmp = Path(tempfile.mkdtemp(prefix="mzl-postgis-"))
        if os.geteuid() == 0:
            os.chown(self.tmp, user.pw_uid, user.pw_gid)
        bindir = self.bindir
        proc = self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-U", USER, "--auth=trust",
                         "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        if proc.returncode != 0:
            raise PostGISUnavailable(f"initdb failed: {_one_line(proc.stderr or proc.stdout)}")
        settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{self.tmp}'"}
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# throwaway benchmark cluster: written once, then only read, deleted at the end\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self._started = True  # from here on, a failed start may still have left a postmaster behind
        proc = self._run(str(bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.tmp / "server.log"),
                         "-w", "-t", "60", "start")
        if proc.returncode != 0:
            log = (self.tmp / "server.log").read_text(errors="replace") if (self.tmp / "server.log").exists() else ""
            raise PostGISUnavailable(f"pg_ctl start failed: {_one_line(log or proc.stderr or proc.stdout)}")

    def _stop_and_delete(self) -> None:
        try:
            if self._started and self.tmp is not None:
                self._stop()
        finally:
            self._started = False
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    def _stop(self) -> None:
        assert self.bindir is not None
        pidfile = self.datadir / "postmaster.pid"
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30", "stop",
                      timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if pidfile.exists():  # pg_ctl could not stop it: kill our own postmaster by the pid it recorded
            try:
                pid = int(pidfile.read_text().split()[0])
                # only if that pid is still our postmaster, not a process that reused the pid of a dead one
                if str(self.datadir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
                    for _ in range(100):
                        os.kill(pid, 0)
                        time.sleep(0.05)
            except (OSError, ValueError, IndexError):
                pass

    def connect(self) -> Any:
        """A new autocommit connection to the cluster over its Unix socket."""
        import psycopg

        assert self.tmp is not None
        return psycopg.connect(host=str(self.tmp), port=int(SERVER_SETTINGS["port"]), user=USER, dbname="postgres",
                               autocommit=True)


def short_version(full: str, server_version: str = "") -> str:
    """`postgis_full_version()` in short: 'PostGIS 3.3.2, GEOS 3.11.1, PROJ 9.1.1, PostgreSQL 15.18'."""
    fields = dict(re.findall(r'([A-Z]+)="([^"]*)"', full))
    parts = [f"PostGIS {fields.get('POSTGIS', '?').split()[0]}"]
    parts += [f"{name} {fields[name].split('-')[0]}" for name in ("GEOS", "PROJ") if name in fields]
    if server_version:
        parts.append(f"PostgreSQL {server_version.split()[0]}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# The catalog in PostGIS and the two queries


def _hex_ewkb(geom: Any) -> str:
    return shapely.to_wkb(shapely.set_srid(geom, METRIC_EPSG), hex=True, include_srid=True)


class PostGISCatalog:
    """The service's control units and red-line patches in PostGIS, and its two queries as one round trip each.

    Rows keep the catalog's row numbers (`id`), so answers name the same rows as the service's index.
    """

    def __init__(self, server: PostGISServer, catalog: Any) -> None:
        self.server = server
        self.version = server.version
        self.conn = server.connect()
        self.conn.execute(f"SET plan_cache_mode = {PLAN_CACHE_MODE}")
        self.backend_pid = self.conn.info.backend_pid
        self.load_s: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self._load(catalog)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "PostGISCatalog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _load(self, catalog: Any) -> None:
        units, red = catalog.units, catalog.layers["red_line"]
        cur = self.conn.cursor()
        t0 = time.perf_counter()
        cur.execute(f"CREATE TABLE units_whole (id int PRIMARY KEY, code text NOT NULL, name text NOT NULL, "
                    f"geom geometry(MultiPolygon, {METRIC_EPSG}) NOT NULL)")
        cur.execute(f"CREATE TABLE red_whole (id int PRIMARY KEY, patch_id text NOT NULL, "
                    f"geom geometry(MultiPolygon, {METRIC_EPSG}) NOT NULL)")
        with cur.copy("COPY units_whole (id, code, name, geom) FROM STDIN") as copy:
            for row, (rec, geom) in enumerate(zip(units.records, units.metric)):
                copy.write_row((row, rec["HJZHGKDYBM"], rec["HJZHGKDYMC"], _hex_ewkb(geom)))
        with cur.copy("COPY red_whole (id, patch_id, geom) FROM STDIN") as copy:
            for row, (rec, geom) in enumerate(zip(red.records, red.metric)):
                copy.write_row((row, rec["patch_id"], _hex_ewkb(geom)))
        self.load_s["copy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cur.execute(f"CREATE TABLE units_subdivided AS SELECT id, code, name, "
                    f"ST_Subdivide(geom, {PIECE_VERTICES})::geometry(Polygon, {METRIC_EPSG}) AS geom FROM units_whole")
        cur.execute(f"CREATE TABLE red_subdivided AS SELECT id, patch_id, "
                    f"ST_Subdivide(geom, {PIECE_VERTICES})::geometry(Polygon, {METRIC_EPSG}) AS geom FROM red_whole")
        self.load_s["subdivide"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for table in ("units_whole", "red_whole", "units_subdivided", "red_subdivided"):
            cur.execute(f"CREATE INDEX ON {table} USING gist (geom)")
            cur.execute(f"ANALYZE {table}")
            self.rows[table] = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        self.load_s["index"] = time.perf_counter() - t0
        self.load_s["total"] = self.load_s["copy"] + self.load_s["subdivide"] + self.load_s["index"]
        invalid = cur.execute("SELECT (SELECT count(*) FROM units_whole WHERE NOT ST_IsValid(geom)) + "
                              "(SELECT count(*) FROM red_whole WHERE NOT ST_IsValid(geom))").fetchone()[0]
        if invalid:
            raise RuntimeError(f"{invalid} geometries are invalid in PostGIS but valid in the service")

    def queries(self, variant: str = "whole") -> "PostGISQueries":
        """The two queries against the tables of one variant ('whole' or 'subdivided')."""
        return PostGISQueries(self.conn, variant)

    @contextmanager
    def default_plan_cache_mode(self) -> Iterator[None]:
        """Run with PostgreSQL's default plan_cache_mode (auto) instead of PLAN_CACHE_MODE."""
        self.conn.execute("SET plan_cache_mode = auto")
        try:
            yield
        finally:
            self.conn.execute(f"SET plan_cache_mode = {PLAN_CACHE_MODE}")


class PostGISQueries:
    """The point lookup and the site query against one variant's tables, each one prepared round trip."""

    def __init__(self, conn: Any, variant: str = "whole") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}, expected one of {sorted(VARIANTS)}")
        self.conn = conn
        self.variant = variant
        units, red = f"units_{variant}", f"red_{variant}"
        # The input geometry is computed once (MATERIALIZED), not once per reference; the units within 0.01 m of
        # the point, as the service answers; the nearest patch by the GiST index's KNN `<->` (exact distance
        # ordering for geometries since PostGIS 2.2), with its exact ST_Distance (0 inside or on the edge).
        nearest = (f"LEFT JOIN LATERAL (SELECT id, patch_id, ST_Distance(geom, q.g) AS distance FROM {red} "
                   f"ORDER BY geom <-> q.g LIMIT 1) AS r ON true")
        units_at = (f"CROSS JOIN LATERAL (SELECT array_agg(code ORDER BY code) AS codes, array_agg(name ORDER BY code) "
                    f"AS names FROM (SELECT DISTINCT code, name FROM {units} "
                    f"WHERE ST_DWithin(geom, q.g, {BOUNDARY_TOLERANCE_M})) AS x) AS u")
        self.sql_point_lonlat = (
            f"WITH q AS MATERIALIZED (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), {STORAGE_EPSG}), "
            f"{METRIC_EPSG}) AS g) SELECT u.codes, u.names, r.id, r.patch_id, r.distance FROM q {units_at} {nearest}")
        self.sql_point_metric = (
            f"WITH q AS MATERIALIZED (SELECT ST_SetSRID(ST_MakePoint(%s, %s), {METRIC_EPSG}) AS g) "
            f"SELECT u.codes, u.names, r.id, r.patch_id, r.distance FROM q {units_at} {nearest}")
        self.sql_site = (
            f"WITH q AS MATERIALIZED (SELECT ST_GeomFromWKB(%s, {METRIC_EPSG}) AS g) "
            f"SELECT u.ids, u.areas, r.id, r.patch_id, r.distance FROM q "
            f"CROSS JOIN LATERAL (SELECT array_agg(id ORDER BY id) AS ids, array_agg(area ORDER BY id) AS areas "
            f"FROM (SELECT id, sum(ST_Area(ST_Intersection(geom, q.g))) AS area FROM {units} "
            f"WHERE ST_Intersects(geom, q.g) GROUP BY id) AS x) AS u {nearest}")

    @staticmethod
    def _red_line(row: Any) -> dict[str, Any]:
        if row is None:
            return {"inside": False, "distance_m": None, "nearest_patch": None}
        distance = float(row[2])
        return {"inside": distance == 0.0, "distance_m": round(distance, 2), "nearest_patch": row[1]}

    def _point(self, sql: str, x: float, y: float) -> dict[str, Any]:
        codes, names, red_id, patch_id, distance = self.conn.execute(sql, (x, y), prepare=True).fetchone()
        return {"units": [{"code": c, "name": n} for c, n in zip(codes or [], names or [])],
                "red_line": self._red_line(None if red_id is None else (red_id, patch_id, distance))}

    def point(self, lon: float, lat: float) -> dict[str, Any]:
        """Units (code, name) holding the EPSG:4490 point (lon, lat) and its red-line distance, as lookup_point."""
        return self._point(self.sql_point_lonlat, lon, lat)

    def point_metric(self, x: float, y: float) -> dict[str, Any]:
        """The same answer for an EPSG:4548 point (easting x, northing y): no CRS transform in PostGIS."""
        return self._point(self.sql_point_metric, x, y)

    def site(self, site: Any) -> tuple[list[Touch], tuple[float, int] | None]:
        """A metric site's units with overlap areas and its red-line distance: the engine's (touches, distance)."""
        ids, areas, red_id, _, distance = self.conn.execute(
            self.sql_site, (shapely.to_wkb(site),), prepare=True).fetchone()
        touches = [Touch(row=int(i), overlap_m2=float(a), boundary_only=float(a) < MIN_OVERLAP_M2)
                   for i, a in zip(ids or [], areas or [])]
        return touches, (None if red_id is None else (float(distance), int(red_id)))

    def round_trip(self) -> int:
        """`SELECT 1`: the floor of any query's round trip on this connection."""
        return self.conn.execute("SELECT 1", prepare=True).fetchone()[0]


# ---------------------------------------------------------------------------------------------------------------
# Agreement with the service


def point_difference(service: dict[str, Any], postgis: dict[str, Any]) -> str | None:
    """How a PostGIS point answer differs from lookup_point's (unit codes exactly, distance within 0.01 m), or None."""
    ours = sorted(u["code"] for u in service["units"])
    theirs = sorted(u["code"] for u in postgis["units"])
    if ours != theirs:
        return f"units: service {ours}, PostGIS {theirs}"
    a, b = service["red_line"]["distance_m"], postgis["red_line"]["distance_m"]
    if (a is None) != (b is None) or (a is not None and abs(a - b) > DISTANCE_TOLERANCE_M + 1e-9):
        return f"red-line distance: service {a} m, PostGIS {b} m"
    return None


def site_difference(engine: tuple[list[Touch], tuple[float, int] | None],
                    postgis: tuple[list[Touch], tuple[float, int] | None]) -> str | None:
    """How a PostGIS site answer differs from the engine's (touches + distance), or None.

    The same units touched and occupied (overlap ≥ MIN_OVERLAP_M2), areas within 0.01 m², distance within 0.01 m.
    """
    (mine, my_near), (theirs, their_near) = engine, postgis
    mine_area = {t.row: t.overlap_m2 for t in mine}
    their_area = {t.row: t.overlap_m2 for t in theirs}
    if sorted(mine_area) != sorted(their_area):
        return f"units touched: engine rows {sorted(mine_area)}, PostGIS rows {sorted(their_area)}"
    occupied = ({r for r, a in mine_area.items() if a >= MIN_OVERLAP_M2},
                {r for r, a in their_area.items() if a >= MIN_OVERLAP_M2})
    if occupied[0] != occupied[1]:
        return f"units occupied: engine rows {sorted(occupied[0])}, PostGIS rows {sorted(occupied[1])}"
    for row in mine_area:
        if abs(mine_area[row] - their_area[row]) > AREA_TOLERANCE_M2:
            return f"overlap with unit row {row}: engine {mine_area[row]:.4f} m², PostGIS {their_area[row]:.4f} m²"
    if (my_near is None) != (their_near is None) or (
            my_near is not None and abs(my_near[0] - their_near[0]) > DISTANCE_TOLERANCE_M):
        return f"red-line distance: engine {my_near and my_near[0]}, PostGIS {their_near and their_near[0]}"
    return None


def worst_site_gaps(engine: tuple[list[Touch], Any], postgis: tuple[list[Touch], Any]) -> tuple[float, float]:
    """The largest overlap-area difference (m²) and the red-line distance difference (m) of one site."""
    mine = {t.row: t.overlap_m2 for t in engine[0]}
    theirs = {t.row: t.overlap_m2 for t in postgis[0]}
    area = max((abs(mine.get(r, 0.0) - theirs.get(r, 0.0)) for r in set(mine) | set(theirs)), default=0.0)
    dist = abs(engine[1][0] - postgis[1][0]) if engine[1] and postgis[1] else 0.0
    return area, dist


def boundary_points(catalog: Any, n: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """EPSG:4548 points at and near the unit and red-line boundaries, where the 0.01 m tolerance decides.

    For each of n random boundary edges: its midpoint, and the midpoint moved 0.005 m and 0.05 m off the edge on
    both sides (inside and outside the tolerance).
    """
    segments = []
    for geoms in (catalog.units.metric, catalog.layers["red_line"].metric):
        for line in shapely.get_parts(shapely.boundary(geoms)).tolist():
            for part in shapely.get_parts(line).tolist():
                c = shapely.get_coordinates(part)
                segments.append(np.hstack([c[:-1], c[1:]]))
    edges = np.concatenate(segments)
    edges = edges[rng.choice(len(edges), size=min(n, len(edges)), replace=False)]
    mid = (edges[:, :2] + edges[:, 2:]) / 2
    along = edges[:, 2:] - edges[:, :2]
    normal = np.column_stack([-along[:, 1], along[:, 0]]) / np.hypot(along[:, 0], along[:, 1])[:, None]
    points = [mid + off * normal for off in (0.0, 0.005, -0.005, 0.05, -0.05)]
    return [(float(x), float(y)) for x, y in np.concatenate(points)]


def check_boundary_points(db: PostGISCatalog, catalog: Any, points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Compare PostGIS (EPSG:4548 query) with lookup_point on metric points, e.g. from boundary_points().

    Returns {"agree": {variant: n}, "checked": n, "differences": [(variant, x, y, text)]}.
    """
    from app.domain.lookup import lookup_point

    nan = float("nan")  # lookup_point only echoes lon/lat
    service = [lookup_point(catalog, x, y, nan, nan) for x, y in points]
    agree, differences = {}, []
    for variant in VARIANTS:
        q = db.queries(variant)
        agree[variant] = 0
        for (x, y), answer in zip(points, service):
            diff = point_difference(answer, q.point_metric(x, y))
            if diff:
                differences.append((variant, x, y, diff))
            else:
                agree[variant] += 1
    return {"agree": agree, "checked": len(points), "differences": differences,
            "multi_unit": sum(len(a["units"]) > 1 for a in service),
            "on_red_line": sum(a["red_line"]["distance_m"] == 0.0 for a in service)}


# ---------------------------------------------------------------------------------------------------------------
# Timing, for the main benchmark and for __main__


class Runs:
    """Timed series as time_calls makes them, each with the CPU per call of this process and of the PostgreSQL
    backend, in µs.

    CPU per call depends much less than wall time on how the cores were shared with other processes.
    """

    def __init__(self, db: PostGISCatalog | None = None) -> None:
        self.db = db
        self.series: list[Any] = []
        self.cpu_us: list[tuple[float, float | None]] = []  # (client, server) per series

    def time(self, name: str, fn: Any, args: Sequence[tuple], warmup: int = 10) -> Any:
        """time_calls(name, fn, args), with the CPU sampled around the timed loop only (not its gc.collect())."""
        from scripts.benchmark_assessment import Series, proc_cpu_s

        for a in args[:warmup]:
            fn(*a)
        gc.collect()
        times = np.empty(len(args))
        clock = time.perf_counter_ns
        server0 = proc_cpu_s(self.db.backend_pid) if self.db else 0.0
        client0 = time.process_time()
        for i, a in enumerate(args):
            t0 = clock()
            fn(*a)
            times[i] = clock() - t0
        client = (time.process_time() - client0) * 1e6 / len(args)
        server = (proc_cpu_s(self.db.backend_pid) - server0) * 1e6 / len(args) if self.db else None
        series = Series(name, times / 1e3)
        self.series.append(series)
        self.cpu_us.append((client, server))
        return series


def bench_points(db: PostGISCatalog, catalog: Any, points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Time the point lookup in PostGIS on EPSG:4490 (lon, lat) points and check every answer against the service.

    Returns {"series": [Series], "cpu_us": [(client, server) per series], "lonlat": {variant: Series of the
    lon/lat query}, "agree": {variant: n}, "checked": n, "differences": [(variant, lon, lat, text)]}.
    """
    from app.domain.lookup import lookup_point
    from app.geo.crs import to_metric, to_storage

    metric = []
    service = []
    for lon, lat in points:
        glon, glat = to_storage(lon, lat, "EPSG:4490")
        x, y = to_metric(glon, glat)
        metric.append((float(x), float(y)))
        service.append(lookup_point(catalog, float(x), float(y), float(glon), float(glat)))
    runs, agree, differences, lonlat = Runs(db), {}, [], {}
    runs.time("PostGIS: SELECT 1 (round-trip floor)", db.queries().round_trip, [()] * len(points))
    for variant, what in VARIANTS.items():
        q = db.queries(variant)
        lonlat[variant] = runs.time(f"PostGIS, {what}: lon/lat → ST_Transform + units + red line", q.point, points)
        runs.time(f"PostGIS, {what}: EPSG:4548 point, no transform", q.point_metric, metric)
        if variant == "subdivided":
            with db.default_plan_cache_mode():
                runs.time(f"PostGIS, {what}: lon/lat, plan_cache_mode=auto (planned on every call)", q.point, points)
        agree[variant] = 0
        for (lon, lat), (x, y), answer in zip(points, metric, service):
            diff = point_difference(answer, q.point(lon, lat)) or point_difference(answer, q.point_metric(x, y))
            if diff:
                differences.append((variant, lon, lat, diff))
            else:
                agree[variant] += 1
    return {"series": runs.series, "cpu_us": runs.cpu_us, "lonlat": lonlat, "agree": agree, "checked": len(points),
            "differences": differences}


def bench_sites(db: PostGISCatalog, catalog: Any, sites: Sequence[Any]) -> dict[str, Any]:
    """Time the 10 ha site query in PostGIS on EPSG:4548 polygons and check every answer against the engine.

    Returns {"series": [Series], "cpu_us": [(client, server) per series], "agree": {variant: n}, "checked": n,
    "differences": [(variant, site index, text)], "worst_area": m², "worst_dist": m}.
    """
    units, red = catalog.units, catalog.layers["red_line"]
    engine = [(units.index.touches(s), red.index.distance(s)) for s in sites]
    runs, agree, differences = Runs(db), {}, []
    worst_area = worst_dist = 0.0
    for variant, what in VARIANTS.items():
        q = db.queries(variant)
        runs.time(f"PostGIS, {what}: units overlap areas + red line", q.site, [(s,) for s in sites])
        if variant == "subdivided":
            with db.default_plan_cache_mode():
                runs.time(f"PostGIS, {what}: plan_cache_mode=auto (planned on every call)", q.site,
                          [(s,) for s in sites])
        agree[variant] = 0
        for i, (site, answer) in enumerate(zip(sites, engine)):
            theirs = q.site(site)
            area, dist = worst_site_gaps(answer, theirs)
            worst_area, worst_dist = max(worst_area, area), max(worst_dist, dist)
            diff = site_difference(answer, theirs)
            if diff:
                differences.append((variant, i, diff))
            else:
                agree[variant] += 1
    return {"series": runs.series, "cpu_us": runs.cpu_us, "agree": agree, "checked": len(sites),
            "differences": differences, "worst_area": worst_area, "worst_dist": worst_dist,
            "multi_unit": sum(len([t for t in e[0] if not t.boundary_only]) > 1 for e in engine),
            "on_red_line": sum(e[1] is not None and e[1][0] == 0.0 for e in engine)}


# ---------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=2000, help="random points inside the territory (default 2000)")
    parser.add_argument("--sites", type=int, default=500, help="random 10 ha squares (default 500)")
    parser.add_argument("--edges", type=int, default=200,
                        help="boundary edges whose midpoints (and ±0.005 m, ±0.05 m off) are checked (default 200)")
    parser.add_argument("--seed", type=int, default=20261128, help="seed of the random points and sites")
    parser.add_argument("--max-other-load", type=float, default=0.25,
                        help="CPU cores other processes may use during a measurement (default 0.25)")
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help="seconds to wait for other processes to go below --max-other-load (default 60)")
    args = parser.parse_args(argv)

    from pyproj import Transformer

    from app.domain.catalog import load_catalog
    from app.domain.lookup import lookup_point
    from app.geo.crs import to_metric, to_storage
    from scripts.benchmark_assessment import QUIET, CpuMeter, fmt, random_points, random_squares, ratio, table

    began = time.perf_counter()
    print("# PostGIS side of the benchmark\n")
    print(f"Seed {args.seed}: {args.points:,} points, {args.sites:,} 10 ha squares, {args.edges:,} boundary edges; "
          f"load average at start {' '.join(Path('/proc/loadavg').read_text().split()[:3])}.")
    catalog = load_catalog(ROOT / "geodata", ROOT / "zones")
    rng = np.random.default_rng(args.seed)
    back = Transformer.from_crs(METRIC_EPSG, STORAGE_EPSG, always_xy=True)
    xy = random_points(catalog, args.points, rng)
    lon, lat = back.transform(xy[:, 0], xy[:, 1])
    points = [(round(float(a), 7), round(float(b), 7)) for a, b in zip(lon, lat)]  # as bench_points does
    sites = random_squares(random_points(catalog, args.sites, rng), rng)

    def service(lo: float, la: float) -> dict:
        glon, glat = to_storage(lo, la, "EPSG:4490")
        x, y = to_metric(glon, glat)
        return lookup_point(catalog, float(x), float(y), float(glon), float(glat))

    units, red = catalog.units, catalog.layers["red_line"]
    QUIET.wait(args.max_other_load, args.wait_quiet)
    meter = CpuMeter()
    in_process = Runs()
    s_service = in_process.time("service, in process: CRS + lookup_point", service, points)
    s_engine = in_process.time("engine, in process: units touches + red-line distance",
                               lambda s: (units.index.touches(s), red.index.distance(s)), [(s,) for s in sites])

    other_in_process = meter.stop()["other_cores"]
    reason = unavailable(probe=False)
    if reason:
        print(f"PostGIS: not available ({reason})")
        return 0
    try:
        with PostGISServer() as server, PostGISCatalog(server, catalog) as db:
            print(f"{server.version}; throwaway cluster (initdb, start, CREATE EXTENSION) {server.start_s:.2f} s; "
                  f"load into PostGIS {db.load_s['total']:.2f} s (COPY {db.load_s['copy']:.2f} s, ST_Subdivide "
                  f"{db.load_s['subdivide']:.2f} s, GiST indexes + ANALYZE {db.load_s['index']:.2f} s); rows: "
                  + ", ".join(f"{t} {n:,}" for t, n in db.rows.items()) + ".\n")
            QUIET.wait(args.max_other_load, args.wait_quiet)
            meter = CpuMeter([db.backend_pid])
            pts = bench_points(db, catalog, points)
            sts = bench_sites(db, catalog, sites)
            other = meter.stop()["other_cores"]
            edge = check_boundary_points(db, catalog, boundary_points(catalog, args.edges, rng))
    except PostGISUnavailable as exc:
        print(f"PostGIS: not available ({exc})")
        return 0

    headers = ["way", "calls", "median", "p10", "p90", "client CPU", "server CPU", "CPU total"]

    def rows(series: list, cpu_us: list, base: Any) -> list[list[str]]:
        return [[s.name, f"{s.n:,}", fmt(s.median), fmt(s.q(10)), fmt(s.q(90)), fmt(client), fmt(server),
                 fmt(client + (server or 0.0)), ratio(s.median, base.median)]
                for s, (client, server) in zip(series, cpu_us)]

    print("## Point lookup (per call, µs)\n")
    table(headers + ["vs service"], rows([s_service], in_process.cpu_us[:1], s_service)
          + rows(pts["series"], pts["cpu_us"], s_service))
    print()
    print("Agreement with lookup_point (same unit codes, red-line distance ±0.01 m, for both the lon/lat and the "
          "EPSG:4548 query): " + ", ".join(f"{v} {n}/{pts['checked']}" for v, n in pts["agree"].items()) + ".")
    for variant, lo, la, diff in pts["differences"][:20]:
        print(f"- {variant}, point ({lo}, {la}): {diff}")
    service_cpu = in_process.cpu_us[0][0]

    def cpu_total(s: Any) -> float:
        client, server = pts["cpu_us"][pts["series"].index(s)]
        return client + (server or 0.0)

    print("PostGIS round trip (lon/lat, one query) / in-process service lookup with CRS transform (issue 7 target: "
          "at least 10×): median wall time "
          + ", ".join(f"{variant} {ratio(s.median, s_service.median)}" for variant, s in pts["lonlat"].items())
          + "; CPU per call (client + server) "
          + ", ".join(f"{variant} {ratio(cpu_total(s), service_cpu)}" for variant, s in pts["lonlat"].items()) + ".")
    print(f"At and near boundaries ({args.edges} random edges of units and red-line patches: midpoint, ±0.005 m "
          f"and ±0.05 m off the edge; EPSG:4548 query): "
          + ", ".join(f"{v} {n}/{edge['checked']}" for v, n in edge["agree"].items())
          + f" ({edge['multi_unit']} of them in 2 units, {edge['on_red_line']} on or in a red-line patch).")
    for variant, x, y, diff in edge["differences"][:20]:
        print(f"- {variant}, point ({x:.4f}, {y:.4f}): {diff}")

    print("\n## 10 ha site (per call, µs)\n")
    table(headers + ["vs engine"], rows([s_engine], in_process.cpu_us[1:], s_engine)
          + rows(sts["series"], sts["cpu_us"], s_engine))
    print()
    print("Agreement with the engine (same units touched and occupied, overlap areas ±0.01 m², red-line distance "
          "±0.01 m): " + ", ".join(f"{v} {n}/{sts['checked']}" for v, n in sts["agree"].items())
          + f" ({sts['multi_unit']} sites occupy 2 or more units, {sts['on_red_line']} overlap the red line); "
            f"largest overlap-area difference {sts['worst_area']:.1e} m², largest red-line distance difference "
            f"{sts['worst_dist']:.1e} m.")
    for variant, i, diff in sts["differences"][:20]:
        print(f"- {variant}, site {i} (centre {sites[i].centroid.x:.2f}, {sites[i].centroid.y:.2f}): {diff}")
    print()
    print("client CPU: CPU time of this process per call (the service in process, or psycopg and the socket); "
          "server CPU: user+system CPU of the connection's PostgreSQL backend per call, from /proc/<pid>/stat (10 ms "
          "ticks). CPU per call depends much less than wall time on other processes sharing the cores.")
    print(f"Other processes used {other_in_process:.2f} cores (of {os.cpu_count()}) while the service was timed, "
          f"{other:.2f} while PostGIS was timed and checked. "
          f"Total {time.perf_counter() - began:.0f} s, of which {QUIET.waited:.0f} s waiting for other processes.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
