"""`python -m scripts.batch` screens a file of sites on the local store, with a progress bar, in every output format."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import orjson
import pyogrio
import pytest
import shapely

from app.domain.assessment import assess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-cli")
    return {**os.environ, "MZL_VERSIONS_DIR": str(root / "store"), "MZL_STORE_PATH": str(root / "a.sqlite3"),
            "PYTHONPATH": str(ROOT)}


def run(env, *args):
    return subprocess.run([sys.executable, "-m", "scripts.batch", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_csv_in_csv_out_with_progress_bar(env, tmp_path, catalog):
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(117.35, 117.60, 2500), rng.uniform(49.50, 49.65, 2500)
    lines = ["id,lon,lat,industry_code"] + [f"S{i},{a:.6f},{b:.6f},3011" for i, (a, b) in enumerate(zip(lon, lat))]
    lines.append("BAD,117.4,nan,3011")
    sites = tmp_path / "sites.csv"
    sites.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "results.csv"
    proc = run(env, sites, "--out", out, "--block", "500")
    assert proc.returncode == 0, proc.stderr
    assert "筛查 [" in proc.stderr and "2,501/2,501 (100%)" in proc.stderr and "500/2,501" in proc.stderr
    text = out.read_text(encoding="utf-8-sig")
    first, rest = text.split("\n", 1)
    assert first.startswith("# dataset_version=v1,") and "rules_version=" in first
    rows = list(csv.DictReader(io.StringIO(rest)))
    assert len(rows) == 2501 and rows[-1]["id"] == "BAD" and "不是有效数值" in rows[-1]["error"]
    for i in (0, 1, 2, 1000):
        doc = assess(shapely.Point(float(f"{lon[i]:.6f}"), float(f"{lat[i]:.6f}")), {"industry_code": "3011"}, catalog)
        assert rows[i]["verdict"] == doc["verdict"]
        assert rows[i]["clauses"] == ";".join(c["id"] for c in doc["clauses"])
    assert not list(tmp_path.glob(".results.csv.*"))  # the temporary file was renamed into place


def test_geopackage_to_geojson(env, tmp_path):
    geoms = [shapely.Point(117.45, 49.58), shapely.Point(117.45, 49.58).buffer(0.003, quad_segs=2)]
    frame = gpd.GeoDataFrame({"id": ["P", "G"], "industry_code": ["3011", "0610"]}, geometry=geoms, crs=4490)
    path = tmp_path / "sites.gpkg"
    pyogrio.write_dataframe(frame, path, layer="sites")
    out = tmp_path / "results.json"  # .json: GeoJSON, from the extension
    proc = run(env, path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    doc = orjson.loads(out.read_bytes())
    assert doc["type"] == "FeatureCollection" and doc["dataset_version"] == "v1" and doc["site_count"] == 2
    assert [f["properties"]["id"] for f in doc["features"]] == ["P", "G"]
    assert [f["geometry"]["type"] for f in doc["features"]] == ["Point", "Polygon"]
    assert all(f["properties"]["verdict"] for f in doc["features"])


def test_refused_input_exits_2_with_a_chinese_message(env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("名称,地址\n甲,乙\n", encoding="utf-8")
    proc = run(env, bad, "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "缺少场址列" in proc.stderr
    assert not (tmp_path / "x.csv").exists()
    proc = run(env, tmp_path / "missing.csv", "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "无法读取" in proc.stderr
