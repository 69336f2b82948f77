"""The PostGIS benchmark's parts that need no server: why PostGIS is unavailable, and how answers are compared."""

from __future__ import annotations

import os
import pwd
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import shapely

from app.domain.spatial import Touch
from scripts import bench_postgis as bp


@pytest.fixture
def psycopg_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", types.ModuleType("psycopg"))


def test_unavailable_names_missing_psycopg_without_starting_anything(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    monkeypatch.setattr(bp.PostGISServer, "__enter__", lambda self: pytest.fail("a server was started"))
    assert "psycopg is not installed" in bp.unavailable()


def test_unavailable_names_missing_postgresql(monkeypatch, psycopg_present):
    monkeypatch.setattr(bp, "find_bindir", lambda: None)
    assert bp.unavailable().startswith("no PostgreSQL server: initdb, pg_ctl and postgres are not on PATH")


def test_unavailable_names_missing_postgis_extension(monkeypatch, psycopg_present, tmp_path):
    share = tmp_path / "share"
    (share / "extension").mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        (bindir / tool).write_text("#!/bin/sh\nexit 1\n")
    (bindir / "pg_config").write_text(f"#!/bin/sh\necho {share}\n")
    (bindir / "pg_config").chmod(0o755)
    monkeypatch.setattr(bp, "find_bindir", lambda: bindir)
    monkeypatch.setattr(bp, "server_user", lambda: pwd.getpwuid(os.getuid()))  # a fresh CI machine has no postgres
    reason = bp.unavailable()
    assert reason.startswith(f"PostGIS is not installed for the PostgreSQL server in {bindir}")
    assert "postgis.control" in reason and "\n" not in reason


def test_short_version():
    full = ('POSTGIS="3.3.2 4975da8" [EXTENSION] PGSQL="150" GEOS="3.11.1-CAPI-1.17.1" PROJ="9.1.1" '
            'LIBXML="2.9.14" LIBJSON="0.16" LIBPROTOBUF="1.4.1" WAGYU="0.5.0 (Internal)"')
    assert bp.short_version(full, "15.18 (Debian 15.18-0+deb12u1)") == \
        "PostGIS 3.3.2, GEOS 3.11.1, PROJ 9.1.1, PostgreSQL 15.18"


def point_answer(codes: list[str], distance: float | None) -> dict:
    return {"units": [{"code": c} for c in codes], "red_line": {"distance_m": distance}}


def test_point_difference_wants_the_same_units_and_distance_within_a_centimetre():
    codes = ["150781110001", "150781210002"]
    service = point_answer(codes, 12.34)
    assert bp.point_difference(service, point_answer(codes[::-1], 12.35)) is None
    assert "units" in bp.point_difference(service, point_answer(codes[:1], 12.34))
    assert "red-line distance" in bp.point_difference(service, point_answer(codes, 12.36))
    assert "red-line distance" in bp.point_difference(service, point_answer(codes, None))


def test_site_difference_checks_touched_and_occupied_units_areas_and_distance():
    engine = ([Touch(0, 99_000.0, False), Touch(3, 1_000.0, False), Touch(5, 0.0, True)], (0.0, 7))
    same = ([Touch(0, 99_000.004, False), Touch(3, 999.996, False), Touch(5, 0.0, True)], (0.004, 8))
    assert bp.site_difference(engine, same) is None
    assert bp.worst_site_gaps(engine, same) == pytest.approx((0.004, 0.004))
    assert "touched" in bp.site_difference(engine, (engine[0][:2], (0.0, 7)))
    assert "occupied" in bp.site_difference(engine, (engine[0][:2] + [Touch(5, 0.02, False)], (0.0, 7)))
    assert "overlap with unit row 3" in bp.site_difference(
        engine, ([engine[0][0], Touch(3, 1_000.02, False), engine[0][2]], (0.0, 7)))
    assert "red-line distance" in bp.site_difference(engine, (engine[0], (0.02, 7)))


def test_boundary_points_lie_on_and_beside_the_edges():
    square = shapely.MultiPolygon([shapely.box(0, 0, 100, 100)])
    patch = shapely.MultiPolygon([shapely.box(200, 0, 210, 10)])
    catalog = SimpleNamespace(units=SimpleNamespace(metric=np.array([square], dtype=object)),
                              layers={"red_line": SimpleNamespace(metric=np.array([patch], dtype=object))})
    points = bp.boundary_points(catalog, 6, np.random.default_rng(1))
    assert len(points) == 5 * 6
    boundaries = shapely.union(square.boundary, patch.boundary)
    gaps = sorted(round(boundaries.distance(shapely.Point(p)), 6) for p in points)
    assert gaps == [0.0] * 6 + [0.005] * 12 + [0.05] * 12
