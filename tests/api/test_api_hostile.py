"""Hostile input thrown at every endpoint: each must be refused with a 4xx and the one JSON error body.

Every case asserts that
- the status is a 4xx (never 5xx), and the specific status where it matters (422 invalid input, 413 too large,
  404 unknown id/code, 405 unsupported method);
- the body is JSON `{"error": {"code", "message", "context"}}` with a non-empty code and a Chinese message an officer
  can act on, without Python internals (tracebacks, attribute errors, exception class names);
- nothing was stored (the assessment count is unchanged);
- the service still answers GET /healthz with 200.

The last test starts a real uvicorn process and sends malformed HTTP over raw sockets.
"""

from __future__ import annotations

import math
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.live import uvicorn_server

ROOT = Path(__file__).resolve().parents[2]
SURVEY = ROOT / "tests" / "fixtures" / "survey"
TWO_PARCELS = (SURVEY / "two_parcels_utf8.txt").read_text(encoding="utf-8")

BODY_LIMIT = 2_000_000  # app.settings.LimitSettings.max_body_bytes default
SURVEY_LIMIT = 1_000_000  # app.settings.LimitSettings.max_survey_bytes default
MAX_VERTICES = 20_000  # app.settings.LimitSettings.max_vertices default

CJK = re.compile(r"[\u4e00-\u9fff]")
LEAKS = re.compile(
    r"Traceback|object has no attribute|File \"|line \d+, in |NoneType|"
    r"\b(?:[A-Z][A-Za-z]*(?:Error|Exception)|KeyboardInterrupt|StopIteration)\b|"
    r"pydantic|orjson|shapely|GEOS|pyproj|starlette|fastapi|sqlite"
)

LON, LAT = 117.447, 49.589  # central Manzhouli
JSON = {"content-type": "application/json"}


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def square(cx: float = LON, cy: float = LAT, d: float = 0.002) -> list[list[float]]:
    return [[cx - d, cy - d], [cx + d, cy - d], [cx + d, cy + d], [cx - d, cy + d], [cx - d, cy - d]]


def circle(n: int, cx: float = LON, cy: float = LAT, r: float = 0.005) -> list[list[float]]:
    ring = [[round(cx + r * math.cos(2 * math.pi * k / n), 9), round(cy + r * math.sin(2 * math.pi * k / n), 9)]
            for k in range(n)]
    return [*ring, ring[0]]


def circle_wkt(n: int) -> str:
    return "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in circle(n)) + "))"


def check_error(resp: httpx.Response, status: int | tuple[int, ...] | None = None) -> dict[str, Any]:
    """Assert a 4xx with the JSON error body, a Chinese message and no leaked internals; return `error`."""
    excerpt = resp.text[:400]
    assert 400 <= resp.status_code < 500, f"expected 4xx, got {resp.status_code}: {excerpt}"
    if status is not None:
        allowed = (status,) if isinstance(status, int) else status
        assert resp.status_code in allowed, f"expected {allowed}, got {resp.status_code}: {excerpt}"
    assert resp.headers.get("content-type", "").startswith("application/json"), (
        f"non-JSON content-type {resp.headers.get('content-type')!r}: {excerpt}"
    )
    try:
        body = resp.json()
    except ValueError:
        pytest.fail(f"body is not JSON: {excerpt}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"no error object: {excerpt}"
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"].strip(), f"empty error.code: {excerpt}"
    message = error.get("message")
    assert isinstance(message, str) and CJK.search(message), f"error.message has no Chinese: {excerpt}"
    leak = LEAKS.search(message)
    assert leak is None, f"error.message leaks internals ({leak.group() if leak else ''!r}): {message[:300]}"
    assert "Traceback" not in resp.text, f"body carries a traceback: {excerpt}"
    assert isinstance(error.get("context", {}), dict), f"error.context is not an object: {excerpt}"
    return error


def assert_healthy(client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200, f"/healthz answered {r.status_code}: {r.text[:200]}"
    assert r.json()["status"] == "ok"


def rejected(client, method: str, url: str, status: int | tuple[int, ...] | None = None, **kwargs: Any):
    """Send one hostile request; assert the refusal, that nothing was stored, and that the service still answers."""
    store = client.app.state.store
    before = store.count()
    resp = client.request(method, url, **kwargs)
    error = check_error(resp, status)
    assert store.count() == before, f"rejected {method} {url} changed the store ({before} -> {store.count()})"
    assert_healthy(client)
    return error


def raw_json(text: str | bytes) -> dict[str, Any]:
    """Request kwargs for a raw JSON body (literal NaN tokens, deliberate syntax errors...)."""
    return {"content": text.encode() if isinstance(text, str) else text, "headers": JSON}


def site_body(site: Any, **extra: Any) -> dict[str, Any]:
    return {"json": {"site": site, **extra}}


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, y]}


def survey_text(text: str = TWO_PARCELS, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in text, f"fixture no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def survey_files(data: bytes, name: str = "parcels.txt") -> dict[str, Any]:
    return {"files": {"file": (name, data, "text/plain")}}


# ---------------------------------------------------------------------------------------------------------------
# POST /v1/assessments — geometry

BOWTIE = [[117.44, 49.58], [117.46, 49.60], [117.46, 49.58], [117.44, 49.60], [117.44, 49.58]]
SHELL = square(d=0.002)
HOLE_OUTSIDE = square(cx=LON + 0.05, d=0.001)

GEOMETRY_CASES = [
    pytest.param(site_body({"type": "Polygon", "coordinates": [SHELL[:-1]]}), 422, id="geojson-unclosed-ring"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [[SHELL[0], SHELL[1], SHELL[0]]]}), 422,
                 id="geojson-ring-3-positions"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [[SHELL[0], SHELL[0]]]}), 422,
                 id="geojson-ring-2-positions"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [SHELL, HOLE_OUTSIDE]}), 422,
                 id="geojson-hole-outside-shell"),
    pytest.param(site_body({"type": "MultiPolygon", "coordinates": [[SHELL], [SHELL]]}), 422,
                 id="multipolygon-duplicate-parts"),
    pytest.param(site_body("POLYGON ((117.44 49.58, 117.46 49.58, 117.46 49.60, 117.44 49.60))"), 422,
                 id="wkt-unclosed-ring"),
    pytest.param(site_body("POLYGON ((117.44 49.58, 117.46 49.58, 117.44 49.58))"), 422, id="wkt-ring-3-positions"),
    pytest.param(site_body("POLYGON ((117.44 49.58, 117.46 49.58"), 422, id="wkt-unbalanced-parens"),
    pytest.param(site_body("POLYGON （（117.44 49.58, 117.46 49.58, 117.46 49.60, 117.44 49.58））"), 422,
                 id="wkt-fullwidth-parens"),
    pytest.param(site_body("SRID=4490;POINT (117.447 49.589)"), 422, id="ewkt-srid"),
    pytest.param(site_body("hello world"), 422, id="wkt-garbage-text"),
    pytest.param(site_body("POINT EMPTY"), 422, id="wkt-point-empty"),
    pytest.param(site_body("POLYGON EMPTY"), 422, id="wkt-polygon-empty"),
    pytest.param(site_body("MULTIPOLYGON (EMPTY, ((117.44 49.58, 117.46 49.58, 117.46 49.60, 117.44 49.58)))"),
                 422, id="wkt-multipolygon-empty-part"),
    pytest.param(site_body(""), 422, id="wkt-empty-string"),
    pytest.param(site_body("   "), 422, id="wkt-blank-string"),
    pytest.param(site_body({"type": "Point", "coordinates": []}), 422, id="geojson-point-empty-coordinates"),
    pytest.param(site_body({"type": "Polygon", "coordinates": []}), 422, id="geojson-polygon-empty-coordinates"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [[]]}), 422, id="geojson-polygon-empty-ring"),
    pytest.param(site_body({"type": "MultiPolygon", "coordinates": []}), 422, id="geojson-multipolygon-empty"),
    pytest.param(site_body({"type": "Polygon"}), 422, id="geojson-no-coordinates"),
    pytest.param(site_body({"coordinates": [LON, LAT]}), 422, id="geojson-no-type"),
    pytest.param(site_body({"type": "Blob", "coordinates": [LON, LAT]}), 422, id="geojson-unknown-type"),
    pytest.param(site_body([]), 422, id="empty-coordinate-list"),
    pytest.param(site_body({}), 422, id="empty-object"),
    pytest.param(site_body({"type": "LineString", "coordinates": SHELL}), 422, id="linestring"),
    pytest.param(site_body("LINESTRING (117.44 49.58, 117.46 49.60)"), 422, id="wkt-linestring"),
    pytest.param(site_body({"type": "MultiPoint", "coordinates": SHELL[:2]}), 422, id="multipoint"),
    pytest.param(site_body({"type": "MultiLineString", "coordinates": [SHELL]}), 422, id="multilinestring"),
    pytest.param(site_body({"type": "GeometryCollection", "geometries": [point(LON, LAT)]}), 422,
                 id="geometrycollection"),
    pytest.param(site_body("GEOMETRYCOLLECTION (POINT (117.447 49.589))"), 422, id="wkt-geometrycollection"),
    pytest.param(site_body("CIRCULARSTRING (117.44 49.58, 117.45 49.59, 117.46 49.58)"), 422,
                 id="wkt-circularstring"),
    pytest.param(site_body({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": point(LON, LAT)}]}), 422, id="featurecollection"),
    pytest.param(site_body({"type": "Feature", "properties": {}, "geometry": None}), 422, id="feature-null-geometry"),
    pytest.param(site_body({"type": "Feature", "geometry": {"type": "Feature", "geometry": point(LON, LAT)}}), 422,
                 id="feature-in-feature"),
    pytest.param(site_body({"type": "Point", "coordinates": [LON, LAT],
                            "crs": {"type": "name", "properties": {"name": "EPSG:3857"}}}), 422,
                 id="geojson-crs-member"),
    # Non-finite numbers: literal NaN / Infinity tokens, as some clients emit them.
    pytest.param(raw_json('{"site": {"type": "Point", "coordinates": [NaN, 49.589]}}'), 422, id="point-nan"),
    pytest.param(raw_json('{"site": {"type": "Point", "coordinates": [117.447, Infinity]}}'), 422,
                 id="point-infinity"),
    pytest.param(raw_json('{"site": {"type": "Point", "coordinates": [-Infinity, 49.589]}}'), 422,
                 id="point-minus-infinity"),
    pytest.param(raw_json('{"site": {"type": "Polygon", "coordinates": [[[117.44, 49.58], [117.46, 49.58], '
                          '[NaN, NaN], [117.44, 49.58]]]}}'), 422, id="polygon-nan-vertex"),
    pytest.param(raw_json('{"site": [[117.44, 49.58], [Infinity, 49.58], [117.46, 49.60]]}'), 422,
                 id="pairs-infinity"),
    pytest.param(raw_json('{"site": {"type": "Point", "coordinates": [117.447, 49.589, NaN]}}'), 422,
                 id="point-nan-elevation"),
    pytest.param(raw_json('{"site": {"type": "Point", "coordinates": [1e400, 49.589]}}'), 422,
                 id="point-1e400-overflows-to-inf"),
    pytest.param(raw_json('{"site": {"type": "Point", "coordinates": [1' + "0" * 400 + ', 49.589]}}'), 422,
                 id="point-400-digit-integer"),
    pytest.param(site_body({"type": "Point", "coordinates": [1e308, 1e308]}), 422, id="point-1e308"),
    pytest.param(site_body("POINT (nan 49.589)"), 422, id="wkt-nan"),
    pytest.param(site_body("POINT (inf -inf)"), 422, id="wkt-inf"),
    pytest.param(site_body("POINT (1e999 49.589)"), 422, id="wkt-1e999"),
    pytest.param(site_body('{"type": "Point", "coordinates": [NaN, 49.5]}'), 422, id="geojson-text-with-nan"),
    # Wrong types where numbers are expected.
    pytest.param(site_body(point("117.447", LAT)), 422, id="coordinate-string"),  # type: ignore[arg-type]
    pytest.param(site_body(point(True, LAT)), 422, id="coordinate-bool"),  # type: ignore[arg-type]
    pytest.param(site_body({"type": "Point", "coordinates": [None, LAT]}), 422, id="coordinate-null"),
    pytest.param(site_body({"type": "Point", "coordinates": [{"x": LON}, LAT]}), 422, id="coordinate-object"),
    pytest.param(site_body({"type": "Polygon", "coordinates": None}), 422, id="coordinates-null"),
    pytest.param(site_body({"type": "Polygon", "coordinates": "117.44 49.58"}), 422, id="coordinates-string"),
    pytest.param(site_body({"type": "Point", "coordinates": [LON]}), 422, id="point-one-number"),
    pytest.param(site_body({"type": "Point", "coordinates": [LON, LAT, 0, 0]}), 422, id="point-four-numbers"),
    pytest.param(site_body([["117.44", "49.58"], ["117.46", "49.58"], ["117.46", "49.60"]]), 422,
                 id="pairs-strings"),
    pytest.param(site_body([[LON, LAT], [LON, LAT]]), 422, id="pairs-two-identical-points"),
    pytest.param(site_body(42), 422, id="site-number"),
    pytest.param(site_body(None), 422, id="site-null"),
    pytest.param(site_body(True), 422, id="site-bool"),
    # Wrongly nested coordinate arrays.
    pytest.param(site_body({"type": "Polygon", "coordinates": SHELL}), 422, id="polygon-missing-ring-level"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [[SHELL]]}), 422, id="polygon-extra-level"),
    pytest.param(site_body({"type": "MultiPolygon", "coordinates": [SHELL]}), 422, id="multipolygon-missing-level"),
    pytest.param(site_body({"type": "Point", "coordinates": [[LON, LAT]]}), 422, id="point-extra-level"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [[LON, LAT, LON, LAT]]}), 422,
                 id="polygon-flat-numbers"),
    pytest.param(site_body([[[LON, LAT]], [[LON, LAT]], [[LON, LAT]]]), 422, id="pairs-extra-level"),
    # Deep nesting: bounded before any parser recursion (GEOS segfaults on deep WKT).
    pytest.param(site_body("GEOMETRYCOLLECTION(" * 50000), 413, id="wkt-50000-nested-geometrycollection"),
    pytest.param(site_body("GEOMETRYCOLLECTION(" * 50000 + ")" * 50000), 413,
                 id="wkt-50000-nested-balanced"),
    pytest.param(site_body("POLYGON " + "(" * 20 + "117 49" + ")" * 20), 413, id="wkt-20-parens"),
    pytest.param(raw_json('{"site": ' + "[" * 100_000 + "]" * 100_000 + "}"), (413, 422),
                 id="json-100000-nested-arrays"),
    pytest.param(raw_json('{"site": ' + "[" * 100_000), (413, 422), id="json-100000-unclosed-arrays"),
    pytest.param(raw_json('{"site": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}"), (413, 422),
                 id="json-50000-nested-objects"),
    pytest.param(site_body("[" * 100_000 + "]" * 100_000), (413, 422), id="geometry-text-100000-nested-arrays"),
    # Size: vertex count (InputTooLarge -> 413) and body size (middleware -> 413).
    pytest.param(site_body({"type": "Polygon", "coordinates": [circle(25_000)]}), 413,
                 id="geojson-circle-25000-vertices"),
    pytest.param(site_body({"type": "Polygon", "coordinates": [circle(MAX_VERTICES + 1)]}), 413,
                 id="geojson-circle-just-over-vertex-limit"),
    pytest.param(site_body({"type": "MultiPolygon", "coordinates": [[circle(12_000)], [circle(12_000, cx=LON + 0.05)]]}),
                 413, id="multipolygon-2x12000-vertices"),
    pytest.param(site_body(circle_wkt(25_000)), 413, id="wkt-circle-25000-vertices"),
    pytest.param(site_body(circle(25_000)), 413, id="pairs-circle-25000-vertices"),
    pytest.param({"json": {"site": "POINT (117.447 49.589)", "padding": "x" * (BODY_LIMIT + 10)}}, 413,
                 id="body-over-2MB"),
    pytest.param({"json": {"site": {"type": "Polygon", "coordinates": [circle(90_000)]}}}, 413,
                 id="body-over-2MB-geometry"),
    pytest.param({"content": iter([b'{"site": "POINT (117.447 49.589)", "pad": "'] + [b"x" * 65536] * 40 + [b'"}']),
                  "headers": JSON}, 413, id="chunked-body-over-2MB-no-content-length"),
]


@pytest.mark.parametrize("kwargs, status", GEOMETRY_CASES)
def test_bad_geometry_is_refused(client, kwargs, status):
    rejected(client, "POST", "/v1/assessments", status, **kwargs)


def test_bowtie_names_a_location(client):
    error = rejected(client, "POST", "/v1/assessments", 422, json={"site": {"type": "Polygon", "coordinates": [BOWTIE]}})
    assert error["code"] == "invalid_geometry"
    assert "自相交" in error["message"]
    located = "位置" in error["message"] or "location" in error["context"]
    assert located, f"self-intersection error does not say where: {error}"
    if "location" in error["context"]:
        x, y = error["context"]["location"]
        assert abs(x - 117.45) < 1e-6 and abs(y - 49.59) < 1e-6


def test_bowtie_wkt_names_a_location(client):
    wkt = "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in BOWTIE) + "))"
    error = rejected(client, "POST", "/v1/assessments", 422, json={"site": wkt})
    assert "位置" in error["message"] or "location" in error["context"], error


# ---------------------------------------------------------------------------------------------------------------
# POST /v1/assessments — the body as a whole and the project facts

GOOD_SITE = {"type": "Point", "coordinates": [LON, LAT]}

BODY_CASES = [
    pytest.param(raw_json('{"site": '), 422, id="malformed-json-truncated"),
    pytest.param(raw_json("{'site': 'POINT (117.447 49.589)'}"), 422, id="malformed-json-single-quotes"),
    pytest.param(raw_json('{"site": "POINT (117.447 49.589)",}'), 422, id="malformed-json-trailing-comma"),
    pytest.param(raw_json(b'{"site": "POINT (117.447 49.589)\xff\xfe"}'), 422, id="invalid-utf8"),
    pytest.param(raw_json(b"\x1f\x8b\x08\x00garbage"), 422, id="gzip-looking-garbage"),
    pytest.param(raw_json(""), 422, id="empty-body"),
    pytest.param(raw_json("null"), 422, id="body-null"),
    pytest.param(raw_json("[1, 2, 3]"), 422, id="body-json-array"),
    pytest.param(raw_json('"POINT (117.447 49.589)"'), 422, id="body-json-string"),
    pytest.param(raw_json("42"), 422, id="body-json-number"),
    pytest.param({"content": b'{"site": "POINT (117.447 49.589)"}', "headers": {"content-type": "text/plain"}}, 422,
                 id="wrong-content-type"),
    pytest.param({"data": {"site": "POINT (117.447 49.589)"}}, 422, id="form-encoded-body"),
    pytest.param({"json": {"project": {"name": "无场址"}}}, 422, id="missing-site"),
    pytest.param({"json": {"sitee": GOOD_SITE}}, 422, id="unknown-top-level-field"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"colour": "red"}}}, 422, id="project-unknown-field"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"__class__": "x"}}}, 422, id="project-dunder-field"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"boiler_capacity_tph": "abc"}}}, 422,
                 id="boiler-capacity-abc"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"boiler_capacity_tph": -1}}}, 422, id="boiler-capacity-neg"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"boiler_capacity_tph": 1e300}}}, 422,
                 id="boiler-capacity-1e300"),
    pytest.param(raw_json('{"site": "POINT (117.447 49.589)", "project": {"boiler_capacity_tph": NaN}}'), 422,
                 id="boiler-capacity-nan"),
    pytest.param(raw_json('{"site": "POINT (117.447 49.589)", "project": {"annual_energy_tce": Infinity}}'), 422,
                 id="annual-energy-infinity"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"construction_type": "demolish"}}}, 422,
                 id="construction-type-demolish"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"industry_code": "44a"}}}, 422, id="industry-code-44a"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"industry_code": "4" * 5000}}}, 422,
                 id="industry-code-5000-digits"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"industry_code": "44\n"}}}, 422,
                 id="industry-code-trailing-newline"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"wastewater_discharge": "maybe"}}}, 422,
                 id="bool-field-maybe"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"red_line_activity": "mining"}}}, 422,
                 id="red-line-activity-unknown"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"name": "项" * 201}}}, 422, id="name-201-chars"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"name": "x" * 1_500_000}}}, 422, id="name-1.5M-chars"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {"name": ["a"]}}}, 422, id="name-list"),
    pytest.param({"json": {"site": GOOD_SITE, "project": None}}, 422, id="project-null"),
    pytest.param({"json": {"site": GOOD_SITE, "project": "new factory"}}, 422, id="project-string"),
    pytest.param({"json": {"site": GOOD_SITE, "project": [1, 2]}}, 422, id="project-list"),
    pytest.param({"json": {"site": GOOD_SITE, "project": {f"field{i}": i for i in range(5000)}}}, 422,
                 id="project-5000-unknown-fields"),
]


@pytest.mark.parametrize("kwargs, status", BODY_CASES)
def test_bad_body_or_project_is_refused(client, kwargs, status):
    rejected(client, "POST", "/v1/assessments", status, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# POST /v1/assessments — coordinates and CRS

CRS_CASES = [
    pytest.param({"site": point(200.0, LAT)}, "invalid_coordinates", id="lon-200"),
    pytest.param({"site": point(-181.0, LAT)}, "invalid_coordinates", id="lon-minus-181"),
    pytest.param({"site": point(LON, 95.0)}, "invalid_coordinates", id="lat-95"),
    pytest.param({"site": point(LON, -90.5)}, "invalid_coordinates", id="lat-minus-90.5"),
    pytest.param({"site": point(LAT, LON)}, "invalid_coordinates", id="swapped-lon-lat"),
    pytest.param({"site": [[LAT, LON], [LAT + 0.01, LON], [LAT + 0.01, LON + 0.01]]}, "invalid_coordinates",
                 id="swapped-lon-lat-polygon"),
    pytest.param({"site": point(39_530_000.0, 5_490_000.0)}, "invalid_coordinates", id="gk-metres-as-4490"),
    pytest.param({"site": point(LON, LAT), "crs": "EPSG:3857"}, "unknown_crs", id="crs-epsg-3857"),
    pytest.param({"site": point(LON, LAT), "crs": "EPSG:99999"}, "unknown_crs", id="crs-epsg-99999"),
    pytest.param({"site": point(LON, LAT), "crs": "WGS-84-ish"}, "unknown_crs", id="crs-made-up"),
    pytest.param({"site": point(LON, LAT), "crs": ""}, "unknown_crs", id="crs-empty"),
    pytest.param({"site": point(LON, LAT), "crs": "+proj=longlat +datum=WGS84"}, "unknown_crs", id="crs-proj-string"),
    pytest.param({"site": point(LON, LAT), "crs": "/etc/passwd"}, "unknown_crs", id="crs-path"),
    pytest.param({"site": point(LON, LAT), "crs": "EPSG:4490" * 1000}, "unknown_crs", id="crs-9000-chars"),
    pytest.param({"site": point(LON, LAT), "crs": None}, None, id="crs-null"),
    pytest.param({"site": point(LON, LAT), "crs": ["EPSG:4490"]}, None, id="crs-list"),
    pytest.param({"site": point(40_530_000.0, 5_490_000.0), "crs": "EPSG:4527"}, "invalid_coordinates",
                 id="gk4527-zone-prefix-40"),
    pytest.param({"site": point(38_530_000.0, 5_490_000.0), "crs": "EPSG:4527"}, "invalid_coordinates",
                 id="gk4527-zone-prefix-38"),
    pytest.param({"site": point(20_530_000.0, 5_490_000.0), "crs": "EPSG:4527"}, "invalid_coordinates",
                 id="gk4527-6deg-zone-20"),
    pytest.param({"site": point(530_000.0, 5_490_000.0), "crs": "EPSG:4527"}, "invalid_coordinates",
                 id="epsg4548-coordinate-as-4527"),
    pytest.param({"site": point(39_530_000.0, 5_490_000.0), "crs": "EPSG:4548"}, "invalid_coordinates",
                 id="epsg4527-coordinate-as-4548"),
    pytest.param({"site": point(5_490_000.0, 39_530_000.0), "crs": "EPSG:4527"}, "invalid_coordinates",
                 id="gk4527-swapped-easting-northing"),
    pytest.param({"site": point(39_530_000.0, 5_490_000.0), "crs": "EPSG:4527", "axis_order": "survey"},
                 "invalid_coordinates", id="gk4527-xy-given-as-survey"),
    pytest.param({"site": point(530_000.0, -5_490_000.0), "crs": "EPSG:4548"}, "invalid_coordinates",
                 id="gk4548-negative-northing"),
    pytest.param({"site": point(LON, LAT), "crs": "EPSG:4490", "axis_order": "survey"}, "invalid_input",
                 id="survey-axis-order-with-4490"),
    pytest.param({"site": point(LON, LAT), "crs": "GCJ02", "axis_order": "survey"}, "invalid_input",
                 id="survey-axis-order-with-gcj02"),
    pytest.param({"site": point(LON, LAT), "axis_order": "yx"}, None, id="axis-order-yx"),
    pytest.param({"site": point(LON, LAT), "axis_order": ""}, None, id="axis-order-empty"),
    pytest.param({"site": point(-74.0, 40.7)}, None, id="site-far-outside-china-new-york"),
    pytest.param({"site": [[-74.0, 40.70], [-73.9, 40.70], [-73.9, 40.80]]}, None,
                 id="site-far-outside-china-new-york-polygon"),
    pytest.param({"site": point(2.35, 48.85), "crs": "GCJ02"}, "invalid_coordinates", id="gcj02-outside-china-paris"),
    pytest.param({"site": point(-74.0, 40.7), "crs": "BD09"}, "invalid_coordinates", id="bd09-outside-china"),
    pytest.param({"site": point(-63.0, LAT)}, None, id="site-opposite-side-of-globe-from-cm117"),
]


@pytest.mark.parametrize("body, code", CRS_CASES)
def test_bad_coordinates_or_crs_are_refused(client, body, code):
    error = rejected(client, "POST", "/v1/assessments", 422, json=body)
    if code is not None:
        assert error["code"] == code, error


def test_swapped_lon_lat_is_explained(client):
    error = rejected(client, "POST", "/v1/assessments", 422, json={"site": point(LAT, LON)})
    assert error["context"].get("hint") == "swapped_lon_lat", error


@pytest.mark.parametrize("easting, zone", [pytest.param(40_530_000.0, 40, id="zone-40"),
                                           pytest.param(38_530_000.0, 38, id="zone-38")])
def test_wrong_gk_zone_names_the_zone(client, easting, zone):
    error = rejected(client, "POST", "/v1/assessments", 422,
                     json={"site": point(easting, 5_490_000.0), "crs": "EPSG:4527"})
    assert error["context"].get("zone_found") == zone, error
    assert str(zone) in error["message"]


# ---------------------------------------------------------------------------------------------------------------
# GET /v1/lookup

LOOKUP_CASES = [
    pytest.param({}, id="no-params"),
    pytest.param({"lon": LON}, id="missing-lat"),
    pytest.param({"lat": LAT}, id="missing-lon"),
    pytest.param({"lon": "", "lat": ""}, id="empty-values"),
    pytest.param({"lon": "abc", "lat": LAT}, id="lon-non-numeric"),
    pytest.param({"lon": LON, "lat": "49,589"}, id="lat-decimal-comma"),
    pytest.param({"lon": "117°26′49″", "lat": LAT}, id="lon-dms-text"),
    pytest.param({"lon": "0x75", "lat": LAT}, id="lon-hex"),
    pytest.param({"lon": "nan", "lat": LAT}, id="lon-nan"),
    pytest.param({"lon": LON, "lat": "NaN"}, id="lat-NaN"),
    pytest.param({"lon": "inf", "lat": LAT}, id="lon-inf"),
    pytest.param({"lon": LON, "lat": "-Infinity"}, id="lat-minus-infinity"),
    pytest.param({"lon": "1e308", "lat": LAT}, id="lon-1e308"),
    pytest.param({"lon": "1e309", "lat": LAT}, id="lon-1e309-overflow"),
    pytest.param({"lon": "-1e308", "lat": "1e308"}, id="both-huge"),
    pytest.param({"lon": "1" + "0" * 5000, "lat": LAT}, id="lon-5000-digits"),
    pytest.param({"lon": 200, "lat": LAT}, id="lon-200"),
    pytest.param({"lon": LON, "lat": 91}, id="lat-91"),
    pytest.param({"lon": LAT, "lat": LON}, id="swapped-lon-lat"),
    pytest.param({"lon": LON, "lat": LAT, "crs": "EPSG:3857"}, id="crs-unknown"),
    pytest.param({"lon": LON, "lat": LAT, "crs": ""}, id="crs-empty"),
    pytest.param({"lon": LON, "lat": LAT, "crs": "x" * 10_000}, id="crs-10000-chars"),
    pytest.param({"lon": LON, "lat": LAT, "axis_order": "yx"}, id="axis-order-yx"),
    pytest.param({"lon": LON, "lat": LAT, "axis_order": "survey"}, id="axis-order-survey-with-4490"),
    pytest.param({"lon": 40_530_000, "lat": 5_490_000, "crs": "EPSG:4527"}, id="gk4527-zone-40"),
    pytest.param({"lon": 38_530_000, "lat": 5_490_000, "crs": "EPSG:4527"}, id="gk4527-zone-38"),
    pytest.param({"lon": 530_000, "lat": 5_490_000, "crs": "EPSG:4527"}, id="epsg4548-coordinate-as-4527"),
    pytest.param({"lon": "nan", "lat": 5_490_000, "crs": "EPSG:4548"}, id="gk4548-nan"),
    pytest.param({"lon": -74.0, "lat": 40.7, "crs": "GCJ02"}, id="gcj02-outside-china"),
    pytest.param({"lon": -63.0, "lat": 49.0}, id="opposite-side-of-globe"),
]


@pytest.mark.parametrize("params", LOOKUP_CASES)
def test_bad_lookup_is_refused(client, params):
    rejected(client, "GET", "/v1/lookup", 422, params=params)


def test_lookup_repeated_param(client):
    # Repeated parameters: FastAPI takes the last value for a scalar; "abc" must be refused, never a 5xx.
    rejected(client, "GET", f"/v1/lookup?lon={LON}&lat={LAT}&lat=abc", 422)


# ---------------------------------------------------------------------------------------------------------------
# POST /v1/assessments/survey

GOOD_FILE = TWO_PARCELS.encode("utf-8")

ZONE40 = survey_text(TWO_PARCELS, ("带号=39", "带号=40"), (",3953", ",4053"))
UNCLOSED = survey_text(
    TWO_PARCELS, ("J5,1,5493861.750,39531000.000\nJ1,1,5494100.000,39531000.000",
                  "J5,1,5493861.750,39531000.000\nJ6,1,5494000.000,39531000.000"))
WRONG_COUNT = survey_text(TWO_PARCELS, ("6,6.4668,1,", "7,6.4668,1,"))
SWAPPED = re.sub(r"(J\d+,\d+),(\d+\.\d+),(\d+\.\d+)", r"\1,\3,\2", TWO_PARCELS)
BOWTIE_SURVEY = survey_text(
    TWO_PARCELS, ("J3,1,5495000.000,39533400.000\nJ4,1,5495000.000,39533000.000",
                  "J3,1,5495000.000,39533000.000\nJ4,1,5495000.000,39533400.000"))
NAN_SURVEY = survey_text(TWO_PARCELS, ("J2,1,5494100.000,39531262.500", "J2,1,nan,39531262.500"))
XIAN80 = survey_text(TWO_PARCELS, ("坐标系=2000国家大地坐标系", "坐标系=1980西安坐标系"))
HUGE_POINTS = survey_text(TWO_PARCELS, ("6,6.4668,1,", "999999999,6.4668,1,"))


def _oversized_survey(size: int) -> bytes:
    head = GOOD_FILE
    line = b"J9,1,5494100.000,39531000.000\n"
    return head + line * ((size - len(head)) // len(line) + 1)


SURVEY_CASES = [
    pytest.param({"data": {"project": "{}"}}, 422, id="no-file"),
    pytest.param({}, 422, id="no-body-at-all"),
    pytest.param({"data": {"file": "not a file", "project": "{}"}}, 422, id="file-as-plain-form-field"),
    pytest.param({"json": {"file": TWO_PARCELS}}, 422, id="json-instead-of-multipart"),
    pytest.param({"content": b"--xyz\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, (400, 422),
                 id="multipart-without-boundary"),
    pytest.param({"content": b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc",
                  "headers": {"content-type": "multipart/form-data; boundary=xyz"}}, (400, 422),
                 id="multipart-truncated"),
    pytest.param(survey_files(b""), 422, id="empty-file"),
    pytest.param(survey_files(b"  \r\n\t\n"), 422, id="whitespace-file"),
    pytest.param(survey_files(bytes(range(256)) * 40, "garbage.bin"), 422, id="binary-garbage"),
    pytest.param(survey_files(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "map.png"), 422, id="png-bytes"),
    pytest.param(survey_files(b"PK\x03\x04" + b"\x00" * 200, "parcels.zip"), 422, id="zip-bytes"),
    pytest.param(survey_files(b"\xef\xbb\xbf" + "[属性描述]".encode("gbk")), 422, id="utf8-bom-over-gbk"),
    pytest.param(survey_files(TWO_PARCELS.encode("utf-16")), 422, id="utf16-with-bom"),
    pytest.param(survey_files(TWO_PARCELS.encode("utf-16-le")), 422, id="utf16-le-without-bom"),
    pytest.param(survey_files(TWO_PARCELS.encode("utf-16-be")), 422, id="utf16-be-without-bom"),
    pytest.param(survey_files(UNCLOSED.encode()), 422, id="unclosed-ring"),
    pytest.param(survey_files(WRONG_COUNT.encode()), 422, id="wrong-point-count"),
    pytest.param(survey_files(HUGE_POINTS.encode()), (413, 422), id="declared-999999999-points"),
    pytest.param(survey_files(ZONE40.encode()), 422, id="zone-40"),
    pytest.param(survey_files(SWAPPED.encode()), 422, id="swapped-x-y"),
    pytest.param(survey_files(BOWTIE_SURVEY.encode()), 422, id="self-intersecting-parcel"),
    pytest.param(survey_files(NAN_SURVEY.encode()), 422, id="nan-coordinate"),
    pytest.param(survey_files(XIAN80.encode()), 422, id="xian80-datum"),
    pytest.param(survey_files(b"[\xe5\xb1\x9e\xe6\x80\xa7\xe6\x8f\x8f\xe8\xbf\xb0]\n" + b"[" * 100_000), 422,
                 id="deep-brackets-text"),
    pytest.param(survey_files("GEOMETRYCOLLECTION(".encode() * 40_000), 422, id="nested-wkt-as-survey"),
    pytest.param(survey_files(_oversized_survey(SURVEY_LIMIT + 1)), 413, id="file-just-over-survey-limit"),
    pytest.param(survey_files(_oversized_survey(BODY_LIMIT + 100)), 413, id="file-over-body-limit"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": "not json"}}, 422, id="project-not-json"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": '{"colour": "red"}'}}, 422,
                 id="project-unknown-field"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": "[1, 2]"}}, 422, id="project-json-array"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": "null"}}, 422, id="project-json-null"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": '"new"'}}, 422, id="project-json-string"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": '{"boiler_capacity_tph": NaN}'}}, 422,
                 id="project-nan"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": '{"boiler_capacity_tph": 1e999}'}}, 422,
                 id="project-1e999"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": '{"construction_type": "demolish"}'}}, 422,
                 id="project-construction-demolish"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": "[" * 100_000}}, 422, id="project-deep-nesting"),
    pytest.param({**survey_files(GOOD_FILE), "data": {"project": '{"name": "' + "x" * 300 + '"}'}}, 422,
                 id="project-name-too-long"),
]


@pytest.mark.parametrize("kwargs, status", SURVEY_CASES)
def test_bad_survey_upload_is_refused(client, kwargs, status):
    rejected(client, "POST", "/v1/assessments/survey", status, **kwargs)


def test_survey_unclosed_ring_names_the_line(client):
    error = rejected(client, "POST", "/v1/assessments/survey", 422, **survey_files(UNCLOSED.encode()))
    assert "未闭合" in error["message"] and "行" in error["message"], error
    assert isinstance(error["context"].get("line"), int), error


def test_survey_zone_40_names_the_zone(client):
    error = rejected(client, "POST", "/v1/assessments/survey", 422, **survey_files(ZONE40.encode()))
    assert error["context"].get("zone_found") == 40 or "40" in error["message"], error


# ---------------------------------------------------------------------------------------------------------------
# GET /v1/assessments/{id} and GET /v1/units/{code}

ID_CASES = [
    pytest.param("00000000-0000-0000-0000-000000000000", id="unknown-uuid"),
    pytest.param("does-not-exist", id="unknown-word"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("a" * 10_000, id="10000-chars"),
    pytest.param("..%2F..%2Fetc%2Fpasswd", id="encoded-path-traversal"),
    pytest.param("..%5C..%5Cwindows%5Cwin.ini", id="encoded-backslash-traversal"),
    pytest.param("%2e%2e", id="encoded-dot-dot"),
    pytest.param("....%2F%2F....%2F%2Fetc", id="double-dot-slash"),
    pytest.param("%00", id="nul-byte"),
    pytest.param("abc%00def", id="embedded-nul"),
    pytest.param(quote("' OR '1'='1"), id="sql-injection"),
    pytest.param(quote("1; DROP TABLE assessments; --"), id="sql-drop"),
    pytest.param(quote("评估编号测试"), id="unicode-chinese"),
    pytest.param(quote("😀" * 50), id="unicode-emoji"),
    pytest.param(quote("\u202etxt.exe"), id="unicode-rtl-override"),
    pytest.param("%ED%A0%80", id="lone-surrogate-utf8"),
    pytest.param("%FF%FE", id="invalid-utf8-percent"),
    pytest.param("%E0%A4%A", id="broken-percent-encoding"),
    pytest.param(quote("<script>alert(1)</script>"), id="html-injection"),
    pytest.param(quote("${jndi:ldap://x/a}"), id="log4j-style"),
    pytest.param(quote("%s%s%s%n"), id="format-string"),
]


@pytest.mark.parametrize("raw_id", ID_CASES)
def test_unknown_assessment_id_is_404(client, raw_id):
    rejected(client, "GET", f"/v1/assessments/{raw_id}", 404)


def test_raw_path_traversal_is_404(client):
    rejected(client, "GET", "/v1/assessments/../../etc/passwd", 404)
    rejected(client, "GET", "/v1/units/../../../etc/passwd", 404)


CODE_CASES = [
    pytest.param("150781000000", id="unknown-numeric-code"),
    pytest.param("ZH15078199999", id="unknown-code-real-shape"),
    pytest.param("zh150781" + "0" * 5, id="lowercase"),
    pytest.param("x" * 10_000, id="10000-chars"),
    pytest.param("%00", id="nul-byte"),
    pytest.param("..%2F..%2Fgeodata", id="encoded-path-traversal"),
    pytest.param(quote("' OR '1'='1"), id="sql-injection"),
    pytest.param(quote("环境管控单元"), id="unicode-chinese"),
    pytest.param(quote("😀"), id="unicode-emoji"),
    pytest.param("%FF", id="invalid-utf8-percent"),
    pytest.param(quote(" "), id="space"),
    pytest.param(quote("__class__"), id="dunder"),
]


@pytest.mark.parametrize("code", CODE_CASES)
def test_unknown_unit_code_is_404(client, code):
    rejected(client, "GET", f"/v1/units/{code}", 404)


def test_unit_bad_geometry_flag_is_422(client):
    units = client.get("/v1/units").json()["units"]
    assert units, "no units in the embedded data"
    rejected(client, "GET", f"/v1/units/{quote(units[0]['code'])}", 422, params={"geometry": "maybe"})


# ---------------------------------------------------------------------------------------------------------------
# Unsupported methods and unknown paths

METHOD_CASES = [
    pytest.param("DELETE", "/v1/units", 405, id="delete-units"),
    pytest.param("POST", "/v1/units", 405, id="post-units"),
    pytest.param("PUT", "/v1/units/ZH150781", 405, id="put-unit"),
    pytest.param("DELETE", "/v1/assessments/00000000-0000-0000-0000-000000000000", 405, id="delete-assessment"),
    pytest.param("PUT", "/v1/assessments", 405, id="put-assessments"),
    pytest.param("GET", "/v1/assessments", 405, id="get-assessments-collection"),
    pytest.param("GET", "/v1/assessments/survey", 404, id="get-survey-as-id"),
    pytest.param("PATCH", "/v1/lookup", 405, id="patch-lookup"),
    pytest.param("POST", "/v1/lookup", 405, id="post-lookup"),
    pytest.param("DELETE", "/healthz", 405, id="delete-healthz"),
    pytest.param("POST", "/v1/dataset", 405, id="post-dataset"),
    pytest.param("GET", "/v2/assessments", 404, id="unknown-path"),
    pytest.param("GET", "/v1/" + "a" * 10_000, 404, id="unknown-long-path"),
    pytest.param("GET", "/%00", 404, id="nul-path"),
]


@pytest.mark.parametrize("method, url, status", METHOD_CASES)
def test_unsupported_method_or_path(client, method, url, status):
    rejected(client, method, url, status)


# ---------------------------------------------------------------------------------------------------------------
# A real server: malformed HTTP that the in-process TestClient cannot send


@pytest.fixture
def live_server(tmp_path):
    with uvicorn_server(tmp_path / "store") as srv:
        yield srv.proc, srv.port, srv.log


def _raw_exchange(port: int, payload: bytes, *, close_write: bool = False, timeout: float = 10.0) -> bytes:
    """Send raw bytes (optionally half-closing, as a client that hangs up mid-body) and read the answer until the
    server closes the connection or `timeout` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def _status(answer: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(m.group(1)) if m else None


def _post_raw(port: int, body: bytes, content_length: str | None = None, *, close_write: bool = False) -> bytes:
    length = str(len(body)) if content_length is None else content_length
    head = (f"POST /v1/assessments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
    return _raw_exchange(port, head + body, close_write=close_write)


def test_real_server_survives_malformed_http(live_server):
    proc, port, log_path = live_server
    base = f"http://127.0.0.1:{port}"
    problems: list[str] = []

    def no_5xx(label: str, answer: bytes, expect: int | tuple[int, ...] | None = None, json_body: bool = False):
        status = _status(answer)
        excerpt = answer[:300].decode("utf-8", "replace")
        if status is not None and status >= 500:
            problems.append(f"{label}: {status} {excerpt}")
        if expect is not None:
            allowed = (expect,) if isinstance(expect, int) else expect
            if status not in allowed:
                problems.append(f"{label}: expected {allowed}, got {status}: {excerpt}")
        if json_body and status is not None:
            head, _, body = answer.partition(b"\r\n\r\n")
            if b"application/json" not in head.lower():
                problems.append(f"{label}: non-JSON answer {excerpt}")
            elif not CJK.search(body.decode("utf-8", "replace")):
                problems.append(f"{label}: message without Chinese {excerpt}")
        if proc.poll() is not None:
            problems.append(f"{label}: server process exited with {proc.returncode}")

    # A truncated body under the limit: the client promises 5,000 bytes, sends 20 and hangs up.
    no_5xx("truncated-body", _post_raw(port, b'{"site": "POINT (117', "5000", close_write=True),
           (None, 400, 408, 413, 422))
    # A truncated body that claims to be far above the limit: refused from the header alone.
    no_5xx("truncated-huge-content-length", _post_raw(port, b'{"site": "POINT (117', "999999999999"), 413,
           json_body=True)
    # A non-numeric Content-Length: the HTTP layer must refuse it, not the app crash on it.
    no_5xx("non-numeric-content-length", _post_raw(port, b'{"site": "POINT (117.447 49.589)"}', "abc"),
           (None, 400, 411, 413, 422))
    no_5xx("negative-content-length", _post_raw(port, b'{"site": "POINT (117.447 49.589)"}', "-5"),
           (None, 400, 411, 413, 422))
    # Deeply nested WKT (segfaults GEOS if it ever reaches it) and literal NaN tokens.
    deep = ('{"site": "' + "GEOMETRYCOLLECTION(" * 50_000 + '"}').encode()
    no_5xx("deep-wkt", _post_raw(port, deep), 413, json_body=True)
    nan = b'{"site": {"type": "Point", "coordinates": [NaN, NaN]}, "project": {"boiler_capacity_tph": NaN}}'
    no_5xx("nan-body", _post_raw(port, nan), 422, json_body=True)
    deep_json = b'{"site": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    # (its exact status is checked in-process by test_bad_geometry_is_refused[json-100000-nested-arrays])
    no_5xx("deep-json-arrays", _post_raw(port, deep_json), (400, 413, 422), json_body=True)
    # Garbage instead of a request line.
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64
    no_5xx("garbage-request-line", _raw_exchange(port, tls_hello, close_write=True), (None, 400))

    time.sleep(0.5)
    assert proc.poll() is None, f"uvicorn died ({proc.returncode}): {log_path.read_text()[-2000:]}"
    r = httpx.get(f"{base}/healthz", timeout=10)
    assert r.status_code == 200, r.text[:300]
    r = httpx.post(f"{base}/v1/assessments", json={"site": "POINT (117.447 49.589)"}, timeout=60)
    assert r.status_code == 201, f"a good request after the hostile ones failed: {r.status_code} {r.text[:300]}"
    assert not problems, "\n".join(problems)
    assert "Segmentation fault" not in log_path.read_text(errors="replace")
