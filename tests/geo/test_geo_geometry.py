import json
import random
import time

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point, Polygon

from app.errors import InputTooLarge, InvalidCoordinates, InvalidGeometry, InvalidInput, UnknownCRS, ZoningError
from app.geo.geometry import parse_geometry, parse_site, transform_geometry, validate_geometry

SQUARE = [[117.40, 49.50], [117.50, 49.50], [117.50, 49.60], [117.40, 49.60], [117.40, 49.50]]
HOLE = [[117.42, 49.52], [117.42, 49.54], [117.44, 49.54], [117.44, 49.52], [117.42, 49.52]]
BOWTIE = [[117.4, 49.5], [117.5, 49.6], [117.5, 49.5], [117.4, 49.6], [117.4, 49.5]]


def square(x0: float, y0: float, size: float) -> list[list[float]]:
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


# --- accepted inputs ------------------------------------------------------------------------------------------


def test_geojson_point():
    assert parse_geometry({"type": "Point", "coordinates": [117.447, 49.589]}).equals(Point(117.447, 49.589))


def test_geojson_polygon_with_hole_and_elevation():
    ring = [[x, y, 600.0] for x, y in SQUARE]
    geom = parse_geometry({"type": "Polygon", "coordinates": [ring, HOLE]})
    assert geom.geom_type == "Polygon" and not geom.has_z
    assert len(geom.interiors) == 1
    assert geom.area == pytest.approx(0.01 - 0.0004, abs=1e-12)


def test_feature_and_json_text():
    geometry = {"type": "Polygon", "coordinates": [SQUARE]}
    feature = {"type": "Feature", "properties": {"name": "场址"}, "geometry": geometry}
    assert parse_geometry(feature).equals(Polygon(SQUARE))
    assert parse_geometry(json.dumps(feature)).equals(Polygon(SQUARE))


def test_multipolygon():
    parts = [[square(117.4, 49.5, 0.01)], [square(117.5, 49.5, 0.01)]]
    geom = parse_geometry({"type": "MultiPolygon", "coordinates": parts})
    assert isinstance(geom, MultiPolygon) and len(geom.geoms) == 2


def test_wkt_and_z_dropped():
    assert parse_geometry("POINT (117.447 49.589)").equals(Point(117.447, 49.589))
    assert parse_geometry("  POINT Z (117.447 49.589 600)  ").wkt == "POINT (117.447 49.589)"
    wkt = "MULTIPOLYGON (((117.4 49.5, 117.5 49.5, 117.5 49.6, 117.4 49.5)))"
    assert parse_geometry(wkt).geom_type == "MultiPolygon"


def test_coordinate_lists_one_pair_is_a_point():
    assert parse_geometry([[117.447, 49.589]]).equals(Point(117.447, 49.589))
    assert parse_geometry([117.447, 49.589]).equals(Point(117.447, 49.589))
    assert parse_geometry("[117.447, 49.589]").equals(Point(117.447, 49.589))


def test_unclosed_coordinate_list_is_closed_as_a_ring():
    geom = parse_geometry(SQUARE[:-1])
    assert list(geom.exterior.coords) == [tuple(p) for p in SQUARE]
    assert parse_geometry(SQUARE).equals(geom)
    assert parse_geometry([tuple(p) for p in SQUARE[:3]]).geom_type == "Polygon"


def test_numpy_numbers_are_numbers():
    assert parse_geometry([np.float64(117.4), np.int64(49)]).equals(Point(117.4, 49.0))


def test_shapely_geometry_is_validated():
    with pytest.raises(InvalidGeometry):
        parse_geometry(Polygon(BOWTIE))
    assert parse_geometry(Point(1, 2)).equals(Point(1, 2))


# --- transform to storage -------------------------------------------------------------------------------------


def test_parse_site_in_storage_crs_is_unchanged():
    geom = parse_site({"type": "Polygon", "coordinates": [SQUARE]})
    assert geom.equals_exact(Polygon(SQUARE), tolerance=0)


@pytest.mark.parametrize(("crs", "axis_order"), [("EPSG:4527", "xy"), ("EPSG:4527", "survey"), ("EPSG:4548", "survey")])
def test_parse_site_from_gauss_kruger(crs, axis_order):
    epsg = int(crs.split(":")[1])
    lons, lats = np.array([p[0] for p in SQUARE]), np.array([p[1] for p in SQUARE])
    e, n = Transformer.from_crs(4490, epsg, always_xy=True).transform(lons, lats)
    pairs = [[b, a] if axis_order == "survey" else [a, b] for a, b in zip(e, n, strict=True)]
    wkt = "POLYGON ((" + ", ".join(f"{a:.4f} {b:.4f}" for a, b in pairs) + "))"
    geom = parse_site(wkt, crs, axis_order=axis_order)
    coords = shapely.get_coordinates(geom)
    assert np.max(np.abs(coords - np.array(SQUARE))) < 1e-7


def test_parse_site_from_gcj02_point():
    from app.geo.crs import wgs84_to_gcj02

    glon, glat = wgs84_to_gcj02(117.447, 49.589)
    geom = parse_site({"type": "Point", "coordinates": [float(glon), float(glat)]}, "GCJ-02")
    assert abs(geom.x - 117.447) < 1e-9 and abs(geom.y - 49.589) < 1e-9


def test_transform_reports_the_vertex_with_bad_coordinates():
    ring = [[49.5, 117.4], [49.5, 117.5], [49.6, 117.5], [49.5, 117.4]]
    with pytest.raises(InvalidCoordinates) as err:
        parse_site([*ring], "EPSG:4490")
    assert err.value.context["vertex_index"] == 0
    assert "经纬度可能颠倒" in err.value.message_zh


def test_transform_wrong_zone_in_geometry():
    with pytest.raises(InvalidCoordinates) as err:
        parse_site("POINT (40532320 5495229)", "EPSG:4527")
    assert err.value.context["zone_found"] == 40


def test_transform_geometry_validates_its_input():
    with pytest.raises(InvalidGeometry):
        transform_geometry(Polygon(BOWTIE), "EPSG:4490")


def test_unknown_crs_is_reported_before_parsing():
    with pytest.raises(UnknownCRS):
        parse_site("GEOMETRYCOLLECTION(" * 100, "EPSG:3857")


# --- validity, never repaired ---------------------------------------------------------------------------------


def test_self_intersection_reports_location():
    with pytest.raises(InvalidGeometry) as err:
        parse_geometry({"type": "Polygon", "coordinates": [BOWTIE]})
    assert err.value.message_zh.startswith("多边形自相交，位置约在 (117.45, 49.55)")
    assert err.value.context["location"] == [117.45, 49.55]
    assert err.value.context["reason"] == "Self-intersection[117.45 49.55]"


@pytest.mark.parametrize(
    ("geometry", "fragment", "reason"),
    [
        (Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [square(20, 20, 1)]), "内环位于外环之外", "Hole lies outside shell"),
        (Polygon(square(0, 0, 10), [square(1, 1, 8), square(2, 2, 1)]), "内环嵌套", "Holes are nested"),
        (
            Polygon(square(0, 0, 10), [[(0, 5), (5, 0), (10, 5), (5, 10), (0, 5)]]),
            "内部不连通",
            "Interior is disconnected",
        ),
        (MultiPolygon([Polygon(square(0, 0, 10)), Polygon(square(1, 1, 1))]), "位于另一个多边形之内", "Nested shells"),
        (MultiPolygon([Polygon(square(0, 0, 10)), Polygon(square(0, 0, 10))]), "相互重叠", "Self-intersection"),
        (
            Polygon([(0, 0), (10, 0), (5, 5), (10, 10), (0, 10), (5, 5), (0, 0)]),
            "环自相交",
            "Ring Self-intersection",
        ),
        (Polygon([(0, 0), (1, 0), (0, 0), (0, 0)]), "不同顶点太少", "Too few points in geometry component"),
    ],
)
def test_invalid_geometries_are_explained_in_chinese(geometry, fragment, reason):
    with pytest.raises(InvalidGeometry) as err:
        validate_geometry(geometry, label="地块 7")
    assert err.value.message_zh.startswith("地块 7：")
    assert fragment in err.value.message_zh and "位置约在" in err.value.message_zh
    assert err.value.context["reason"].startswith(reason)
    assert len(err.value.context["location"]) == 2


def test_unclosed_geojson_ring_is_refused_not_closed():
    with pytest.raises(InvalidGeometry) as err:
        parse_geometry({"type": "Polygon", "coordinates": [SQUARE[:-1]]})
    assert "未闭合" in err.value.message_zh
    assert err.value.context == {"path": "coordinates[0]", "location": [117.4, 49.5]}


def test_unclosed_wkt_ring_is_refused():
    with pytest.raises(InvalidGeometry) as err:
        parse_geometry("POLYGON ((117.4 49.5, 117.5 49.5, 117.5 49.6))")
    assert "未闭合" in err.value.message_zh


def test_hole_ring_with_too_few_positions():
    with pytest.raises(InvalidGeometry) as err:
        parse_geometry({"type": "Polygon", "coordinates": [SQUARE, HOLE[:2] + HOLE[:1]]})
    assert "第 1 个内环（coordinates[1]）只有 3 个坐标" in err.value.message_zh


# --- hostile inputs -------------------------------------------------------------------------------------------

HOSTILE = [
    ({"type": "Point", "coordinates": [float("nan"), 49.5]}, InvalidCoordinates, "NaN"),
    ({"type": "Point", "coordinates": [117.4, float("inf")]}, InvalidCoordinates, "NaN 或无穷大"),
    ({"type": "Point", "coordinates": ["117.4", 49.5]}, InvalidCoordinates, "应为数字，实际为文本“117.4”"),
    ({"type": "Point", "coordinates": [None, 49.5]}, InvalidCoordinates, "空值"),
    ({"type": "Point", "coordinates": [True, 49.5]}, InvalidCoordinates, "布尔值"),
    ({"type": "Point", "coordinates": [10**400, 49.5]}, InvalidCoordinates, "数值过大"),
    ({"type": "Point", "coordinates": [117.4]}, InvalidGeometry, "实际有 1 个元素"),
    ({"type": "Point", "coordinates": {"x": 1}}, InvalidGeometry, "应为坐标"),
    ({"type": "Point", "coordinates": []}, InvalidGeometry, "几何为空"),
    ({"type": "Polygon", "coordinates": []}, InvalidGeometry, "几何为空"),
    ({"type": "Polygon", "coordinates": [[]]}, InvalidGeometry, "只有 0 个坐标"),
    ({"type": "Polygon", "coordinates": SQUARE}, InvalidGeometry, "嵌套层数不对"),
    ({"type": "Polygon", "coordinates": [117.4, 49.5]}, InvalidGeometry, "Polygon 应为 [[[x, y], ...], ...]"),
    ({"type": "Polygon", "coordinates": [[SQUARE]]}, InvalidGeometry, "嵌套层数不对"),
    ({"type": "Polygon", "coordinates": "POLYGON"}, InvalidGeometry, "应为环的列表"),
    ({"type": "MultiPolygon", "coordinates": [SQUARE]}, InvalidGeometry, "嵌套层数不对"),
    ({"type": "MultiPolygon", "coordinates": 5}, InvalidGeometry, "多边形的列表"),
    ({"type": "Polygon"}, InvalidGeometry, "缺少 coordinates"),
    ({"type": "LineString", "coordinates": [[1, 2], [3, 4]]}, InvalidGeometry, "LineString（线）"),
    ({"type": "MultiPoint", "coordinates": [[1, 2]]}, InvalidGeometry, "MultiPoint（多点）"),
    ({"type": "MultiLineString", "coordinates": []}, InvalidGeometry, "MultiLineString"),
    ({"type": "GeometryCollection", "geometries": []}, InvalidGeometry, "GeometryCollection"),
    ({"type": "FeatureCollection", "features": []}, InvalidGeometry, "要素集合"),
    ({"type": "Feature", "geometry": None}, InvalidGeometry, "没有几何"),
    ({"type": "Feature", "geometry": "POINT (1 2)"}, InvalidGeometry, "应为 GeoJSON 几何对象"),
    ({"type": "Feature", "geometry": {"type": "Feature", "geometry": None}}, InvalidGeometry, "不能是 Feature"),
    ({"type": "Circle", "coordinates": [1, 2]}, InvalidGeometry, "无法识别的 GeoJSON 类型"),
    ({"type": 5}, InvalidGeometry, "type"),
    ({}, InvalidGeometry, "type"),
    ({"type": "Point", "coordinates": [1, 2], "crs": {}}, InvalidInput, "crs"),
    ("POINT EMPTY", InvalidGeometry, "几何为空"),
    ("POLYGON EMPTY", InvalidGeometry, "几何为空"),
    ("MULTIPOLYGON (EMPTY, ((0 0, 1 0, 1 1, 0 0)))", InvalidGeometry, "第 1 个多边形为空"),
    ("POINT (nan 49.5)", InvalidCoordinates, "NaN"),
    ("POINT (1e400 49.5)", InvalidCoordinates, "NaN 或无穷大"),
    ("POLYGON ((0 0, 1 0, 0 0))", InvalidGeometry, "不同顶点太少"),
    ("POLYGON ((0 0, 1 0, 1 1, 0 0)", InvalidGeometry, "括号不配对"),
    ("POINT (1 2))", InvalidGeometry, "括号不配对"),
    ("POINT (1 a)", InvalidGeometry, "语法错误"),
    ("POINT (1 2) POINT (3 4)", InvalidGeometry, "语法错误"),
    ("POINT（117.4 49.5）", InvalidGeometry, "第 6 个字符“（”"),
    ("SRID=4490;POINT (1 2)", InvalidGeometry, "SRID"),
    ("LINESTRING (0 0, 1 1)", InvalidGeometry, "LineString（线）"),
    ("MULTIPOINT ((0 0), (1 1))", InvalidGeometry, "MultiPoint（多点）"),
    ("GEOMETRYCOLLECTION (POINT (1 2))", InvalidGeometry, "GeometryCollection"),
    ("CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0))", InvalidGeometry, "CURVEPOLYGON"),
    ("hello world", InvalidGeometry, "无法识别的几何文本"),
    ("12 34", InvalidGeometry, "应以几何类型开头"),
    ("", InvalidGeometry, "WKT 文本为空"),
    ("   ", InvalidGeometry, "WKT 文本为空"),
    ('{"type": "Point", "coordinates": [1, NaN]}', InvalidGeometry, "不是合法的 JSON"),
    ('{"type": "Point", "coordinates": [1, 2]', InvalidGeometry, "不是合法的 JSON"),
    ([], InvalidGeometry, "坐标列表为空"),
    ([[117.4, 49.5], [117.5, 49.5]], InvalidGeometry, "只有 2 个不同的点"),
    ([[0, 0], [1, 0], [0, 0]], InvalidGeometry, "只有 2 个不同的点"),
    ([[117.4, "49.5"]], InvalidCoordinates, "coordinates[0][1] 应为数字"),
    ([["117.4", "49.5"]], InvalidCoordinates, "应为数字"),
    ([[1, 2, 3, 4]], InvalidGeometry, "实际有 4 个元素"),
    ([[[117.4, 49.5]]], InvalidGeometry, "嵌套层数不对"),
    ([[117.4, 49.5], 5], InvalidGeometry, "应为坐标"),
    (None, InvalidInput, "无法识别的几何输入"),
    (5, InvalidInput, "无法识别的几何输入"),
    (b"POINT (1 2)", InvalidInput, "无法识别的几何输入"),
    ({"type": "Polygon", "coordinates": [BOWTIE]}, InvalidGeometry, "多边形自相交"),
]


@pytest.mark.parametrize(("value", "error", "fragment"), HOSTILE)
def test_hostile_inputs_raise_domain_errors(value, error, fragment):
    with pytest.raises(ZoningError) as err:
        parse_geometry(value)
    assert type(err.value) is error
    assert fragment in err.value.message_zh
    json.dumps(err.value.context, allow_nan=False)


def test_deeply_nested_wkt_is_refused_quickly_without_reaching_geos():
    deep = ["GEOMETRYCOLLECTION(" * 50000, "POLYGON" + "(" * 50000 + ")" * 50000, "POINT" + "(" * 9 + "1 2" + ")" * 9]
    for text in deep:
        start = time.perf_counter()
        with pytest.raises(InputTooLarge) as err:
            parse_geometry(text)
        assert time.perf_counter() - start < 1.0
        assert err.value.context["limit"] == 8


def test_deeply_nested_json_does_not_crash():
    text = '{"type": "Point", "coordinates": ' + "[" * 50000 + "]" * 50000 + "}"
    with pytest.raises(InvalidGeometry):
        parse_geometry(text)
    nested: list = [117.4, 49.5]
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(InvalidGeometry):
        parse_geometry({"type": "Polygon", "coordinates": nested})
    with pytest.raises(InvalidGeometry):
        parse_geometry(nested)


def test_text_size_cap():
    with pytest.raises(InputTooLarge) as err:
        parse_geometry("POINT (1 2)" + " " * 2_000_000)
    assert err.value.context["limit"] == 2_000_000
    with pytest.raises(InputTooLarge):
        parse_geometry("POINT (117.4 49.5)", max_chars=10)


def zigzag(n: int) -> list[list[float]]:
    xs = np.linspace(117.4, 117.5, n)
    ring = [[float(x), 49.5 + (0.001 if i % 2 else 0.0)] for i, x in enumerate(xs)]
    return [*ring, [117.5, 49.6], [117.4, 49.6], ring[0]]


def test_vertex_cap_on_every_input_form():
    ring = zigzag(20_001)
    with pytest.raises(InputTooLarge) as err:
        parse_geometry({"type": "Polygon", "coordinates": [ring]})
    assert err.value.context["limit"] == 20_000
    with pytest.raises(InputTooLarge):
        parse_geometry(ring)
    with pytest.raises(InputTooLarge):
        parse_geometry("POLYGON ((" + ", ".join(f"{x} {y}" for x, y in ring) + "))")
    with pytest.raises(InputTooLarge):
        parse_geometry(shapely.Polygon(ring))
    with pytest.raises(InputTooLarge):
        parse_geometry({"type": "Polygon", "coordinates": [SQUARE]}, max_vertices=4)
    big = parse_geometry({"type": "Polygon", "coordinates": [zigzag(19_000)]})
    assert shapely.get_num_coordinates(big) == 19_003


def test_multipolygon_vertex_cap_counts_all_parts():
    part = [square(117.4, 49.5, 0.001)]
    with pytest.raises(InputTooLarge):
        parse_geometry({"type": "MultiPolygon", "coordinates": [part] * 5000})


def test_fuzzed_wkt_only_raises_domain_errors():
    rng = random.Random(11)
    seeds = [
        "POLYGON ((117.4 49.5, 117.5 49.5, 117.5 49.6, 117.4 49.6, 117.4 49.5), (117.42 49.52, 117.42 49.54, "
        "117.44 49.54, 117.44 49.52, 117.42 49.52))",
        "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((2 2, 3 2, 3 3, 2 2)))",
        "POINT (117.4 49.5)",
    ]
    tokens = ["(", ")", ",", " ", "-", ".", "e", "9", "0", "EMPTY", "Z", "nan", "inf", "1e999", "POINT", "(((", "M"]
    for _ in range(2000):
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(tokens) + text[pos + rng.randint(0, 2):]
        try:
            parse_site(text)
        except ZoningError:
            pass


def test_fuzzed_geojson_only_raises_domain_errors():
    rng = random.Random(5)
    junk = [None, "1", True, [], {}, [[]], float("nan"), float("inf"), -1e300, 1e300, [1], [1, 2, 3], "x", 10**400]

    def mutate(node):
        if isinstance(node, list) and node and rng.random() < 0.8:
            i = rng.randrange(len(node))
            node = list(node)
            choice = rng.random()
            if choice < 0.5:
                node[i] = mutate(node[i])
            elif choice < 0.7:
                node[i] = rng.choice(junk)
            elif choice < 0.85:
                del node[i]
            else:
                node.insert(i, rng.choice(junk))
            return node
        return rng.choice(junk) if rng.random() < 0.3 else node

    base = {"type": "Polygon", "coordinates": [SQUARE, HOLE]}
    for _ in range(2000):
        kind = rng.choice(["Polygon", "MultiPolygon", "Point", "polygon"])
        candidate = {"type": kind, "coordinates": mutate(base["coordinates"])}
        try:
            parse_site(candidate)
        except ZoningError:
            pass
