"""GET /v1/lookup answers well-formed requests on a fast path: same bytes as FastAPI's path, and FastAPI for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from app.api import lookup as lookup_api
from app.geo.crs import from_metric, to_metric


@pytest.fixture()
def fast_calls(client, monkeypatch):
    """How many requests the fast path answered itself."""
    answered = []
    original = lookup_api.fast_lookup

    def counting(scope):
        response = original(scope)
        if response is not None:
            answered.append(scope["query_string"])
        return response

    monkeypatch.setitem(client.app.state.fast_paths, "/v1/lookup", counting)
    return answered


def _points(catalog, n: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = catalog.territory.bounds
    x, y = rng.uniform(minx - 3000, maxx + 3000, n), rng.uniform(miny - 3000, maxy + 3000, n)
    lon, lat = from_metric(x, y)
    return [(round(a, 7), round(b, 7)) for a, b in zip(lon.tolist(), lat.tolist())]


def test_fast_answers_equal_fastapi_answers(client, catalog, fast_calls):
    e, n = (float(v) for v in to_metric(117.45, 49.59))
    queries = [f"lon={a}&lat={b}" for a, b in _points(catalog, 150)]
    queries += [f"lon={e}&lat={n}&crs=EPSG:4548", f"lat={e}&lon={n}&crs=EPSG:4548&axis_order=survey",
                f"lon={e + 39e6}&lat={n}&crs=EPSG:4527", "lon=117.45&lat=49.59&crs=EPSG:4326",
                "lon=117.4556&lat=49.5902&crs=GCJ02", "lon=117.462&lat=49.596&crs=BD09", "lon=1.1745e2&lat=49.59"]
    for q in queries:
        fast = client.get(f"/v1/lookup?{q}")
        # An unknown parameter is ignored by FastAPI but sends the request down FastAPI's path.
        slow = client.get(f"/v1/lookup?{q}&unused=1")
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert len(fast_calls) == len(queries)


def test_inside_a_red_line_patch(client, catalog, fast_calls):
    red = catalog.layers["red_line"]
    p = red.geoms[3].representative_point()
    body = client.get(f"/v1/lookup?lon={p.x!r}&lat={p.y!r}").json()
    assert body["red_line"] == {"inside": True, "distance_m": 0.0, "nearest_patch": red.records[3]["patch_id"]}
    assert len(fast_calls) == 1


@pytest.mark.parametrize("query, status", [
    ("lon=abc&lat=49.5", 422), ("lon=117.4", 422), ("lat=49.5", 422), ("lon=117.4&lat=49.5&lat=49.6", 200),
    ("lon=nan&lat=49.5", 422), ("lon=%20117.45&lat=49.59", 200), ("lon=117.45&lat=49.59&axis_order=yx", 422),
    ("lon=117.45&lat=49.59&crs=EPSG:3857", 422), ("lon=49.59&lat=117.45", 422), ("lon=0&lat=0", 422),
    ("lon=117.45&lat=49.59&axis_order=survey", 422), ("lon=1e400&lat=49.59", 422), ("", 422),
    ("lon=117.45&lat=49.59&crs=EPSG%3A4326", 200), ("lon=117.45&lat=49.59&", 200),
])
def test_other_requests_take_fastapis_path(client, fast_calls, query, status):
    r = client.get(f"/v1/lookup?{query}")
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["error"]["message"]
    assert fast_calls == []


def test_head_and_other_methods_are_fastapis(client, fast_calls):
    assert client.post("/v1/lookup?lon=117.45&lat=49.59").status_code == 405
    assert fast_calls == []


def test_a_failing_fast_path_leaves_the_answer_to_the_app(client, monkeypatch, caplog):
    def broken(scope):
        raise RuntimeError("boom")

    monkeypatch.setitem(client.app.state.fast_paths, "/v1/lookup", broken)
    r = client.get("/v1/lookup?lon=117.45&lat=49.59")
    assert r.status_code == 200 and r.json()["units"]
    assert "fast path for /v1/lookup failed" in caplog.text


def test_openapi_still_documents_the_parameters(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/lookup"]["get"]
    assert [p["name"] for p in op["parameters"] if p["in"] == "query"] == ["lon", "lat", "crs", "axis_order"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Lookup")
