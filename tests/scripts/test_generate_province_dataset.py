"""The province-scale generator writes, at a small scale, a deterministic dataset the service loads: units tile the
territory exactly, red-line patches lie inside priority units without overlapping, vertex counts are as stated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

from app.domain.catalog import load_catalog
from app.domain.lookup import lookup_point
from app.domain.schema import LAYERS, METRIC_EPSG, STORAGE_EPSG
from app.geo.crs import from_metric
from scripts.generate_province_dataset import (
    GPKG_NAME,
    PATCH_MAX_VERTICES,
    PATCH_MIN_VERTICES,
    RASTER_NAME,
    Params,
    generate,
)

PARAMS = Params(units=40, red_patches=200, seed=7)


def files(folder: Path) -> dict[str, bytes]:
    """Every file the generator wrote, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "generated.json"}


def metric(layer: str, folder: Path) -> tuple[np.ndarray, object]:
    frame = pyogrio.read_dataframe(folder / GPKG_NAME, layer=layer)
    assert frame.crs.to_epsg() == STORAGE_EPSG
    return np.asarray(frame.to_crs(METRIC_EPSG).geometry.values, dtype=object), frame


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("province") / "a"
    summary = generate(out, PARAMS, out=lambda line: None)
    assert summary["units"] == 40 and summary["red_patches"] == 200
    return out


def test_same_seed_same_bytes(dataset, tmp_path):
    again = tmp_path / "b"
    generate(again, PARAMS, out=lambda line: None)
    first, second = files(dataset), files(again)
    assert GPKG_NAME in first and RASTER_NAME in first and "zones/citywide.yaml" in first
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_units_tile_the_territory_exactly(dataset):
    units, frame = metric("control_units", dataset)
    counties, _ = metric("admin_boundary", dataset)
    territory = shapely.union_all(counties)
    union = shapely.union_all(units)
    assert abs(union.area - territory.area) <= 1.0
    assert shapely.area(shapely.symmetric_difference(union, territory)) <= 1.0
    assert abs(shapely.area(units).sum() - union.area) <= 1.0  # no overlap anywhere
    left, right = shapely.STRtree(units).query(units, predicate="intersects")
    pairs = left < right
    assert pairs.sum() >= len(units)  # neighbours share edges
    assert shapely.area(shapely.intersection(units[left[pairs]], units[right[pairs]])).max() <= 1.0
    kinds = frame["ZHGKDYFL"].value_counts().to_dict()
    assert kinds == {"1": 13, "2": 27}  # the city's 5:10 proportion
    assert frame["HJZHGKDYBM"].str.fullmatch(r"ZH[0-9]{6}[12][0-9]{4}").all()
    vertices = shapely.get_num_coordinates(units)
    assert vertices.min() >= 100 and 300 <= np.median(vertices) <= 5000 and vertices.max() <= 20_000


def test_red_line_inside_priority_units_and_apart(dataset):
    units, frame = metric("control_units", dataset)
    patches, red = metric("red_line", dataset)
    priority = units[frame["ZHGKDYFL"].to_numpy() == "1"]
    holder, patch = shapely.STRtree(priority).query(patches, predicate="within")
    assert np.array_equal(np.sort(holder), np.arange(len(patches)))  # each patch within exactly one priority unit
    left, right = shapely.STRtree(patches).query(patches, predicate="intersects")
    assert (left == right).all()
    vertices = shapely.get_num_coordinates(patches)
    assert vertices.min() >= PATCH_MIN_VERTICES and vertices.max() <= PATCH_MAX_VERTICES
    assert 250 <= np.median(vertices) <= 700
    assert red["patch_id"].is_unique
    assert set(red["function"]) <= set(LAYERS["red_line"].enums["function"])


def test_contract_and_service_lookup(dataset):
    present = {name for name, _ in pyogrio.list_layers(dataset / GPKG_NAME)}
    assert {n for n, spec in LAYERS.items() if spec.required} <= present
    with rasterio.open(dataset / RASTER_NAME) as src:
        assert src.crs.to_epsg() == METRIC_EPSG and src.dtypes[0] == "uint8"
    catalog = load_catalog(dataset, dataset / "zones")
    assert len(catalog.units.records) == 40 and len(catalog.layers["red_line"].records) == 200
    assert any(c.unit for c in catalog.rules.clauses)  # one clause list per generated unit
    red = catalog.layers["red_line"]
    for row in (0, 101, 199):
        patch = red.metric[row]
        point = patch.point_on_surface()
        lon, lat = from_metric(point.x, point.y)
        answer = lookup_point(catalog, point.x, point.y, float(lon), float(lat))
        assert answer["red_line"] == {"inside": True, "distance_m": 0.0, "nearest_patch": red.records[row]["patch_id"]}
        owner = [r for r, g in enumerate(catalog.units.metric) if g.contains(patch)]
        assert [u["code"] for u in answer["units"]] == [catalog.units.records[owner[0]]["HJZHGKDYBM"]]
        assert answer["units"][0]["type"] == "priority"
