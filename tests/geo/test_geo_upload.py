"""Boundary-file uploads: formats, encodings, CRSs, and hostile files refused quickly with Chinese reasons."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import shapely

from app.errors import InputTooLarge, InvalidInput, UnknownCRS, ZoningError
from app.geo.upload import Upload, UploadLimits, _run_in_child, read_upload

_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uploads" / "make_fixtures.py"
_spec = importlib.util.spec_from_file_location("upload_fixtures", _FIXTURES)
mf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mf)

CJK = re.compile(r"[\u4e00-\u9fff]")


def refused(exc_type: type[ZoningError], data: bytes, filename: str = "upload.zip", *, within_s: float = 5.0,
            **kwargs) -> ZoningError:
    """The upload is refused with exc_type, a Chinese message and JSON-safe context, within `within_s`."""
    start = time.perf_counter()
    with pytest.raises(ZoningError) as info:
        read_upload(data, filename, **kwargs)
    elapsed = time.perf_counter() - start
    exc = info.value
    assert type(exc) is exc_type, (type(exc), exc.message_zh)
    assert CJK.search(exc.message_zh), exc.message_zh
    assert exc.detail
    json.dumps(exc.context, allow_nan=False)
    assert elapsed < within_s, elapsed
    return exc


def names(upload: Upload, layer: int = 0) -> list[str]:
    return upload.layers[layer].frame["HJZHGKDYMC"].tolist()


def assert_lonlat_truth(upload: Upload, layer: int = 0, tol: float = 1e-7) -> None:
    frame = upload.layers[layer].frame
    assert frame.crs.to_epsg() == 4490
    for geom, ring in zip(frame.geometry, mf.RINGS_LONLAT):
        got = shapely.get_coordinates(geom)
        want = np.array(ring)
        # A shapefile writer may reorient rings: compare as sets of vertices.
        assert got.shape == want.shape
        for point in want:
            assert np.abs(got - point).max(axis=1).min() < tol


# ---------------------------------------------------------------------------------------------------------------
# Shapefile encodings


def test_gbk_shapefile_with_cpg_reads_chinese_exactly() -> None:
    up = read_upload(mf.shapefile_zip(), "管控单元.zip")
    assert up.format == "shapefile" and up.warnings == ()
    layer = up.layers[0]
    assert layer.name == "units" and layer.encoding == "GBK" and layer.geometry_types == ("Polygon",)
    assert names(up) == mf.NAMES
    assert layer.frame["HJZHGKDYBM"].tolist() == mf.CODES
    assert list(layer.frame.columns) == ["HJZHGKDYMC", "HJZHGKDYBM", "ZHGKDYFL", "geometry"]


def test_gbk_without_cpg_uses_dbf_language_id_with_warning() -> None:
    up = read_upload(mf.shapefile_zip(cpg=None, ldid=0x4D), "units.zip")
    assert names(up) == mf.NAMES and up.layers[0].encoding == "GBK"
    assert len(up.warnings) == 1 and "GBK" in up.warnings[0] and "0x4D" in up.warnings[0]


def test_gbk_without_any_declaration_is_refused_until_encoding_given() -> None:
    data = mf.shapefile_zip(cpg=None, ldid=0)
    exc = refused(InvalidInput, data)
    assert "encoding=GBK" in exc.message_zh and ".cpg" in exc.message_zh
    up = read_upload(data, "units.zip", encoding="GBK")
    assert names(up) == mf.NAMES and up.layers[0].encoding == "GBK"


def test_cpg_claiming_utf8_over_gbk_bytes_is_refused_naming_the_conflict() -> None:
    exc = refused(InvalidInput, mf.shapefile_zip(cpg="UTF-8"))
    assert "UTF-8" in exc.message_zh and "GBK" in exc.message_zh and "HJZHGKDYMC" in exc.message_zh
    assert exc.context["record"] == 1
    # The caller's encoding wins over the .cpg, but is checked against the bytes too.
    assert names(read_upload(mf.shapefile_zip(cpg="UTF-8"), "u.zip", encoding="cp936")) == mf.NAMES
    refused(InvalidInput, mf.shapefile_zip(), encoding="UTF-8")
    refused(InvalidInput, mf.shapefile_zip(), encoding="latin-1")


def test_gbk_declaration_over_utf8_text_is_refused_as_mojibake() -> None:
    utf8_with_gbk_cpg = mf.shapefile_zip(encoding="UTF-8", cpg="GBK")
    assert "UTF-8" in refused(InvalidInput, utf8_with_gbk_cpg).message_zh
    refused(InvalidInput, mf.shapefile_zip(encoding="UTF-8", cpg=None, ldid=0x4D))
    assert names(read_upload(utf8_with_gbk_cpg, "u.zip", encoding="UTF-8")) == mf.NAMES


def test_utf8_shapefile_without_cpg_reads_as_utf8_and_says_so() -> None:
    up = read_upload(mf.shapefile_zip(encoding="UTF-8", cpg=None), "units.zip")
    assert names(up) == mf.NAMES and up.layers[0].encoding == "UTF-8"
    assert any("UTF-8" in w for w in up.warnings)


def test_gbk_member_names_without_utf8_flag_are_decoded() -> None:
    up = read_upload(mf.gbk_named_zip(), "units.zip")
    assert up.layers[0].name == "满洲里管控单元"


def test_several_shapefiles_in_folders_are_separate_layers() -> None:
    a = mf.shapefile_parts()
    b = mf.shapefile_parts(frame=mf.units_frame(4548), prj=mf.ESRI_PRJ[4548], encoding="UTF-8", cpg="UTF-8")
    members = {f"红线/units{e}": d for e, d in a.items()} | {f"单元/units{e}": d for e, d in b.items()}
    up = read_upload(mf.zip_bytes(members), "all.zip")
    assert sorted(layer.name for layer in up.layers) == ["单元/units", "红线/units"]
    assert {layer.source_crs for layer in up.layers} == {"EPSG:4527", "EPSG:4548"}
    for i in range(2):
        assert names(up, i) == mf.NAMES
        assert_lonlat_truth(up, i)


def test_shapefile_missing_dbf_is_refused() -> None:
    parts = mf.shapefile_parts()
    exc = refused(InvalidInput, mf.zip_bytes({f"units{e}": d for e, d in parts.items() if e != ".dbf"}))
    assert ".dbf" in exc.message_zh


# ---------------------------------------------------------------------------------------------------------------
# CRS


@pytest.mark.parametrize(
    ("epsg", "prj"),
    [(4527, "auto"), (4527, mf.ESRI_PRJ[4527]), (4548, mf.ESRI_PRJ[4548]), (4490, mf.ESRI_PRJ[4490])],
    ids=["4527-gdal", "4527-esri-zone39", "4548-esri-cm117e", "4490-esri"],
)
def test_cgcs2000_shapefiles_come_back_in_4490(epsg: int, prj: str) -> None:
    up = read_upload(mf.shapefile_zip(frame=mf.units_frame(epsg), prj=prj), "units.zip")
    assert up.layers[0].source_crs == f"EPSG:{epsg}"
    assert_lonlat_truth(up)


def test_file_without_crs_is_refused_unless_crs_given() -> None:
    data = mf.shapefile_zip(frame=mf.units_frame(4548), prj=None)
    exc = refused(InvalidInput, data)
    assert ".prj" in exc.message_zh and "crs" in exc.message_zh and "EPSG:4548" in exc.message_zh
    up = read_upload(data, "units.zip", crs="EPSG:4548")
    assert up.layers[0].source_crs == "EPSG:4548" and up.warnings
    assert_lonlat_truth(up)


def test_file_crs_conflicting_with_parameter_is_refused_naming_both() -> None:
    exc = refused(InvalidInput, mf.shapefile_zip(), crs="EPSG:4548")
    assert "EPSG:4527" in exc.message_zh and "EPSG:4548" in exc.message_zh
    assert read_upload(mf.shapefile_zip(), "u.zip", crs="4527").layers[0].source_crs == "EPSG:4527"


def test_unknown_or_obfuscated_crs_parameter_is_refused() -> None:
    refused(UnknownCRS, mf.shapefile_zip(prj=None), crs="EPSG:3857")
    refused(UnknownCRS, mf.shapefile_zip(prj=None), crs="GCJ02")


def test_wrong_crs_is_refused_naming_the_crs_used() -> None:
    # Coordinates without the zone prefix declared as zone-39-with-prefix.
    exc = refused(InvalidInput, mf.shapefile_zip(frame=mf.units_frame(4548), prj=mf.ESRI_PRJ[4527]))
    assert "EPSG:4527" in exc.message_zh
    # Gauss-Krüger metres in a GeoJSON without crs member (RFC 7946 says WGS84).
    exc = refused(InvalidInput, mf.geojson_bytes(epsg=4548), "units.geojson")
    assert "EPSG:4326" in exc.message_zh and "中国境外" in exc.message_zh


def test_non_cgcs2000_datum_is_refused() -> None:
    exc = refused(UnknownCRS, mf.shapefile_zip(frame=mf.units_frame(4548), prj=mf.XIAN80_PRJ))
    assert "Xian 1980" in exc.message_zh


# ---------------------------------------------------------------------------------------------------------------
# GeoPackage


def test_gpkg_reads_real_tables_and_ignores_views(tmp_path: Path) -> None:
    up = read_upload(mf.gpkg_multi(tmp_path / "m.gpkg").read_bytes(), "layers.gpkg")
    assert up.format == "gpkg"
    assert [layer.name for layer in up.layers] == ["control_units", "red_line"]
    assert [layer.source_crs for layer in up.layers] == ["EPSG:4490", "EPSG:4527"]
    assert names(up) == mf.NAMES
    assert up.layers[1].frame["name"].tolist() == [mf.NAMES[1]]


def test_gpkg_with_slow_view_and_trigger_does_not_hang(tmp_path: Path) -> None:
    start = time.perf_counter()
    up = read_upload(mf.gpkg_slow(tmp_path / "s.gpkg").read_bytes(), "slow.gpkg")
    assert time.perf_counter() - start < 5
    assert [layer.name for layer in up.layers] == ["control_units"]
    only_view = mf.gpkg_slow(tmp_path / "v.gpkg", keep_table=False).read_bytes()
    refused(InvalidInput, only_view, "slow.gpkg")


def test_sqlite_that_is_not_a_geopackage_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "plain.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    exc = refused(InvalidInput, path.read_bytes(), "plain.gpkg")
    assert "GeoPackage" in exc.message_zh


def test_reads_run_in_a_child_that_is_killed_on_timeout() -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidInput) as info:
        _run_in_child(time.sleep, (30,), 0.5)
    assert time.perf_counter() - start < 5
    assert "超时" in info.value.message_zh


# ---------------------------------------------------------------------------------------------------------------
# GeoJSON and KML


def test_geojson_feature_collection_and_single_feature() -> None:
    up = read_upload(mf.geojson_bytes(), "红线.geojson")
    assert up.format == "geojson" and up.layers[0].name == "红线" and up.layers[0].source_crs == "EPSG:4326"
    assert names(up) == mf.NAMES
    assert_lonlat_truth(up)
    single = read_upload(mf.geojson_bytes(single=True, z=True), "one.json")
    frame = single.layers[0].frame
    assert len(frame) == 1 and not shapely.has_z(frame.geometry.values).any()
    assert single.layers[0].source_crs == "EPSG:4326"


def test_geojson_legacy_crs_member_is_honoured() -> None:
    data = mf.geojson_bytes(epsg=4527, crs_member="urn:ogc:def:crs:EPSG::4527")
    up = read_upload(data, "units.geojson")
    assert up.layers[0].source_crs == "EPSG:4527"
    assert_lonlat_truth(up)
    refused(InvalidInput, data, "units.geojson", crs="EPSG:4548")


def test_geojson_without_crs_member_takes_the_crs_parameter_with_warning() -> None:
    up = read_upload(mf.geojson_bytes(epsg=4548), "units.geojson", crs="EPSG:4548")
    assert up.layers[0].source_crs == "EPSG:4548" and "RFC 7946" in up.warnings[0]
    assert_lonlat_truth(up)


def test_kml_folders_are_layers() -> None:
    up = read_upload(mf.kml_bytes(), "boundary.kml")
    assert up.format == "kml"
    assert [(layer.name, layer.geometry_types) for layer in up.layers] == [
        ("生态保护红线", ("Polygon",)), ("监测点", ("Point",))
    ]
    assert up.layers[0].frame["Name"].tolist() == mf.NAMES[:2]
    assert up.layers[0].frame.crs.to_epsg() == 4490


def test_xml_that_is_not_kml_or_declares_entities_is_refused() -> None:
    refused(InvalidInput, b'<?xml version="1.0"?><gpx version="1.1"></gpx>', "a.kml")
    bomb = b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY a "aaaa">]><kml>&a;</kml>'
    refused(InvalidInput, bomb, "a.kml")


# ---------------------------------------------------------------------------------------------------------------
# Geometry kept as read


def test_invalid_bowtie_is_kept_not_repaired() -> None:
    up = read_upload(mf.bowtie_geojson(), "bowtie.geojson")
    geom = up.layers[0].frame.geometry.iloc[0]
    assert not geom.is_valid
    assert np.allclose(shapely.get_coordinates(geom), np.array(mf.BOWTIE_LONLAT), atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Hostile and oversized input


@pytest.mark.parametrize(
    ("builder", "needle"),
    [
        (mf.traversal_zip, ".."),
        (lambda: mf.traversal_zip("data\\..\\..\\"), ".."),
        (mf.absolute_zip, "绝对路径"),
        (mf.symlink_zip, "符号链接"),
        (mf.nested_zip, "嵌套"),
        (mf.disguised_nested_zip, "嵌套"),
    ],
    ids=["dotdot", "dotdot-backslash", "absolute", "symlink", "nested", "disguised-nested"],
)
def test_hostile_zip_members_are_refused(builder, needle: str, tmp_path: Path) -> None:
    exc = refused(InvalidInput, builder(), workdir=tmp_path, within_s=1.0)
    assert needle in exc.message_zh
    assert list(tmp_path.iterdir()) == []  # nothing left behind, nothing written outside


def test_zip_bomb_is_refused_quickly() -> None:
    exc = refused(InputTooLarge, mf.bomb_zip(64), within_s=1.0)
    assert "压缩" in exc.message_zh
    # Under the ratio floor but over a small total cap.
    refused(InputTooLarge, mf.bomb_zip(4), limits=UploadLimits(max_uncompressed=1_000_000), within_s=1.0)


def test_too_many_members_features_vertices_bytes() -> None:
    refused(InputTooLarge, mf.many_members_zip(60))
    refused(InputTooLarge, mf.shapefile_zip(), limits=UploadLimits(max_features=2))
    refused(InputTooLarge, mf.geojson_bytes(), "a.geojson", limits=UploadLimits(max_features=2))
    refused(InputTooLarge, mf.kml_bytes(), "a.kml", limits=UploadLimits(max_vertices=8))
    refused(InputTooLarge, mf.geojson_bytes(), "a.geojson", limits=UploadLimits(max_bytes=100))


def test_garbage_and_empty_input_are_refused_listing_formats() -> None:
    exc = refused(InvalidInput, b"\x00\x01garbage" * 50, "data.bin")
    assert "GeoPackage" in exc.message_zh and "GeoJSON" in exc.message_zh and "KML" in exc.message_zh
    refused(InvalidInput, b"", "empty.zip")
    refused(InvalidInput, b"PK\x03\x04 truncated zip", "x.zip")
    refused(InvalidInput, b'{"type": "FeatureCollection", "features": [', "x.geojson")
    refused(InvalidInput, b'{"type": "FeatureCollection", "features": []}', "x.geojson")
    lone_shp = mf.shapefile_parts()[".shp"]
    assert ".zip" in refused(InvalidInput, lone_shp, "units.shp").message_zh


def test_user_filename_is_never_a_path(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for name in ("/vsicurl/http://127.0.0.1:9/x.geojson", "../../etc/passwd", "C:\\evil\\..\\x.geojson"):
        up = read_upload(mf.geojson_bytes(), name, workdir=work)
        assert names(up) == mf.NAMES
    assert list(work.iterdir()) == []


def test_the_reader_child_has_a_memory_cap() -> None:
    """A file whose reading needs more memory than the cap is refused as too large; the server process is untouched."""
    features = [
        {"type": "Feature", "properties": {"HJZHGKDYBM": f"ZH{i:011d}"},
         "geometry": {"type": "Polygon", "coordinates": [
             [[117.3 + i * 1e-4 + 1e-5 * (k % 7), 49.5 + 1e-5 * k] for k in range(400)] + [[117.3 + i * 1e-4, 49.5]]]}}
        for i in range(1500)
    ]
    data = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    assert len(read_upload(data, "big.geojson").layers[0].frame) == 1500  # fine under the default cap
    exc = refused(InputTooLarge, data, "big.geojson", limits=UploadLimits(max_memory_bytes=64 * 2**20), within_s=20)
    assert "内存" in exc.message_zh and exc.context["limit_bytes"] == 64 * 2**20
