import numpy as np
import pytest
from pyproj import Transformer

from app.errors import InvalidCoordinates, InvalidInput, UnknownCRS
from app.geo import crs
from app.geo.crs import (
    ACCEPTED_CRS_NAMES,
    bd09_to_gcj02,
    from_metric,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    parse_crs,
    point_to_storage_metric,
    to_metric,
    to_storage,
    wgs84_to_gcj02,
)

CENTRE = (117.447, 49.589)  # Manzhouli city centre, CGCS2000


def gk(epsg: int, lon: float = CENTRE[0], lat: float = CENTRE[1]) -> tuple[float, float]:
    return Transformer.from_crs(4490, epsg, always_xy=True).transform(lon, lat)


def metric_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    ea, na = to_metric(*a)
    eb, nb = to_metric(*b)
    return float(np.hypot(ea - eb, na - nb))


@pytest.mark.parametrize(
    ("name", "canonical", "kind"),
    [
        ("EPSG:4490", "EPSG:4490", "geographic"),
        ("epsg:4490", "EPSG:4490", "geographic"),
        ("4490", "EPSG:4490", "geographic"),
        (4490, "EPSG:4490", "geographic"),
        ("cgcs2000", "EPSG:4490", "geographic"),
        ("WGS84", "EPSG:4326", "geographic"),
        ("4326", "EPSG:4326", "geographic"),
        (" EPSG:4527 ", "EPSG:4527", "projected"),
        ("4548", "EPSG:4548", "projected"),
        ("gcj-02", "GCJ02", "obfuscated"),
        ("GCJ02", "GCJ02", "obfuscated"),
        ("bd-09", "BD09", "obfuscated"),
        ("Bd09", "BD09", "obfuscated"),
    ],
)
def test_parse_crs_accepts_names_and_aliases(name, canonical, kind):
    spec = parse_crs(name)
    assert (spec.name, spec.kind) == (canonical, kind)
    assert parse_crs(spec) is spec


@pytest.mark.parametrize("name", ["EPSG:3857", "GCJ", "", "BD-09-2", None, True, 4.0])
def test_unknown_crs_lists_accepted_names(name):
    with pytest.raises(UnknownCRS) as err:
        parse_crs(name)
    for accepted in ACCEPTED_CRS_NAMES:
        assert accepted in err.value.message_zh
    assert err.value.context["accepted"] == list(ACCEPTED_CRS_NAMES)


def test_storage_crs_passes_through_unchanged():
    lon, lat = to_storage(*CENTRE)
    assert (float(lon), float(lat)) == CENTRE
    assert lon.shape == ()


def test_wgs84_is_taken_as_cgcs2000():
    lon, lat = to_storage(*CENTRE, "WGS84")
    assert abs(lon - CENTRE[0]) < 1e-12 and abs(lat - CENTRE[1]) < 1e-12


@pytest.mark.parametrize(
    ("epsg", "name", "axis_order"),
    [(4527, "EPSG:4527", "xy"), (4548, "EPSG:4548", "xy"), (4527, "EPSG:4527", "survey"), (4548, "4548", "survey")],
)
def test_each_projected_crs_lands_the_centre_in_the_same_place(epsg, name, axis_order):
    e, n = gk(epsg)
    x, y = (n, e) if axis_order == "survey" else (e, n)
    lon, lat = to_storage(x, y, name, axis_order=axis_order)
    assert abs(lon - CENTRE[0]) < 1e-7
    assert abs(lat - CENTRE[1]) < 1e-7


def test_gk_coordinates_of_the_centre_are_as_expected():
    e, n = gk(4527)
    assert 39_532_000 < e < 39_533_000
    assert 5_495_000 < n < 5_495_500


def test_arrays_keep_their_shape():
    e, n = gk(4548)
    xs = np.array([[e, e + 100.0], [e - 100.0, e]])
    ys = np.full((2, 2), n)
    lon, lat = to_storage(xs, ys, "EPSG:4548")
    assert lon.shape == (2, 2) and lat.shape == (2, 2)
    assert abs(lon[0, 0] - CENTRE[0]) < 1e-7
    assert lon[0, 1] > lon[0, 0] > lon[1, 0]


def test_to_metric_and_back():
    e, n = to_metric(*CENTRE)
    expected = gk(4548)
    assert abs(e - expected[0]) < 1e-6 and abs(n - expected[1]) < 1e-6
    lon, lat = from_metric(e, n)
    assert abs(lon - CENTRE[0]) < 1e-9 and abs(lat - CENTRE[1]) < 1e-9


def test_gcj02_round_trip_lands_within_a_metre():
    glon, glat = wgs84_to_gcj02(*CENTRE)
    lon, lat = to_storage(glon, glat, "GCJ02")
    assert metric_distance((float(lon), float(lat)), CENTRE) < 1.0
    assert abs(lon - CENTRE[0]) < 1e-9 and abs(lat - CENTRE[1]) < 1e-9


def test_gcj02_inverse_round_trip_below_1e9_degrees():
    lons = np.linspace(117.2, 117.9, 8)
    lats = np.linspace(49.3, 49.7, 8)
    back = wgs84_to_gcj02(*gcj02_to_wgs84(lons, lats))
    assert np.max(np.abs(back[0] - lons)) < 1e-9
    assert np.max(np.abs(back[1] - lats)) < 1e-9


def test_gcj02_offset_at_manzhouli_is_about_600m_east_215m_north():
    glon, glat = wgs84_to_gcj02(*CENTRE)
    e0, n0 = to_metric(*CENTRE)
    e1, n1 = to_metric(glon, glat)
    assert 560 < e1 - e0 < 640
    assert 190 < n1 - n0 < 240


def test_bd09_round_trip_lands_within_a_metre():
    blon, blat = gcj02_to_bd09(*wgs84_to_gcj02(*CENTRE))
    lon, lat = to_storage(blon, blat, "BD-09")
    assert metric_distance((float(lon), float(lat)), CENTRE) < 1.0
    glon, glat = bd09_to_gcj02(blon, blat)
    expected = wgs84_to_gcj02(*CENTRE)
    assert abs(glon - expected[0]) < 1e-9 and abs(glat - expected[1]) < 1e-9


def test_bd09_offset_from_gcj02_is_the_published_constant_shift():
    glon, glat = wgs84_to_gcj02(*CENTRE)
    blon, blat = gcj02_to_bd09(glon, glat)
    assert 0.0060 < blon - glon < 0.0070
    assert 0.0055 < blat - glat < 0.0065


def test_swapped_lon_lat_is_reported_as_swapped():
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(49.589, 117.447)
    assert "经纬度可能颠倒" in err.value.message_zh
    assert err.value.context["hint"] == "swapped_lon_lat"
    assert err.value.context["location"] == [49.589, 117.447]


def test_metres_given_as_lon_lat_are_named():
    e, n = gk(4548)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(e, n, "EPSG:4490")
    assert "EPSG:4527" in err.value.message_zh and "EPSG:4548" in err.value.message_zh
    assert err.value.context["hint"] == "projected_values"


@pytest.mark.parametrize(("lon", "lat", "word"), [(181.0, 49.0, "经度 181"), (117.0, -91.0, "纬度 -91")])
def test_lon_lat_out_of_range(lon, lat, word):
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(lon, lat)
    assert word in err.value.message_zh


@pytest.mark.parametrize(("zone", "cm"), [(40, "120°E"), (38, "114°E")])
def test_wrong_gk_zone_prefix_is_refused_naming_both_zones(zone, cm):
    e, n = gk(4548)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(zone * 1_000_000 + e, n, "EPSG:4527")
    assert f"带号为 {zone}" in err.value.message_zh
    assert cm in err.value.message_zh and "第 39 带" in err.value.message_zh
    assert err.value.context["zone_found"] == zone
    assert err.value.context["zone_expected"] == 39


def test_6_degree_prefix_20_in_4527_suggests_stripping_it():
    e, n = gk(4548)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(20_000_000 + e, n, "EPSG:4527")
    assert "6 度带第 20 带" in err.value.message_zh and "EPSG:4548" in err.value.message_zh


def test_4527_without_prefix_points_to_4548():
    e, n = gk(4548)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(e, n, "EPSG:4527")
    assert "没有带号前缀 39" in err.value.message_zh and "EPSG:4548" in err.value.message_zh


def test_4548_with_prefix_points_to_4527():
    e, n = gk(4527)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(e, n, "EPSG:4548")
    assert "带号前缀 39" in err.value.message_zh and "EPSG:4527" in err.value.message_zh
    assert err.value.context["zone_found"] == 39


@pytest.mark.parametrize("epsg", [4527, 4548])
def test_swapped_easting_northing_is_reported(epsg):
    e, n = gk(epsg)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(n, e, f"EPSG:{epsg}")
    assert "可能颠倒" in err.value.message_zh and "survey" in err.value.message_zh
    assert err.value.context["hint"] == "swapped_axes"


def test_survey_order_given_as_xy_is_reported_in_survey_terms():
    e, n = gk(4527)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(e, n, "EPSG:4527", axis_order="survey")
    assert "X（北坐标）与 Y（东坐标）可能颠倒" in err.value.message_zh


def test_implausible_northing_and_easting():
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(500_000.0, 12_000_000.0, "EPSG:4548")
    assert "北坐标 y 12000000" in err.value.message_zh
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(-5.0, 5_495_000.0, "EPSG:4548")
    assert "0～1,000,000" in err.value.message_zh


def test_survey_axis_order_needs_a_projected_crs():
    with pytest.raises(InvalidInput) as err:
        to_storage(*CENTRE, "EPSG:4490", axis_order="survey")
    assert "只适用于高斯-克吕格投影坐标" in err.value.message_zh


def test_unknown_axis_order():
    with pytest.raises(InvalidInput) as err:
        to_storage(*CENTRE, axis_order="yx")  # type: ignore[arg-type]
    assert err.value.context["accepted"] == ["xy", "survey"]


@pytest.mark.parametrize(
    ("x", "y", "index", "coordinate", "label"),
    [
        (float("nan"), 49.5, 0, "x", "经度"),
        ([117.4, 117.5, 117.6], [49.5, 49.5, float("inf")], 2, "y", "纬度"),
        ([117.4, float("-inf")], [49.5, 49.5], 1, "x", "经度"),
    ],
)
def test_nan_and_inf_name_the_coordinate_and_index(x, y, index, coordinate, label):
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(x, y)
    assert err.value.context["vertex_index"] == index
    assert err.value.context["coordinate"] == coordinate
    assert label in err.value.message_zh
    assert isinstance(err.value.context["value"], str)


def test_nan_in_projected_input_is_refused_before_pyproj():
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(float("nan"), 5_495_000.0, "EPSG:4548")
    assert "东坐标 x" in err.value.message_zh


def test_non_numeric_and_mismatched_input():
    with pytest.raises(InvalidCoordinates):
        to_storage("abc", 49.5)
    with pytest.raises(InvalidCoordinates):
        to_storage([117.4, None], [49.5, 49.5])
    with pytest.raises(InvalidInput) as err:
        to_storage([117.4, 117.5], [49.5])
    assert err.value.context == {"x_count": 2, "y_count": 1}


def test_obfuscated_coordinates_outside_china_are_refused():
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(10.0, 50.0, "GCJ02")
    assert "不在中国境内" in err.value.message_zh


def test_transform_output_is_checked(monkeypatch):
    class Broken:
        def transform(self, x, y):
            return np.full_like(x, np.inf), np.full_like(y, np.inf)

    monkeypatch.setattr(crs, "transformer", lambda src, dst: Broken())
    e, n = gk(4548)
    with pytest.raises(InvalidCoordinates) as err:
        to_storage(e, n, "EPSG:4548")
    assert "转换结果无效" in err.value.message_zh


def test_transformers_are_built_once():
    assert crs.transformer(4490, 4548) is crs.transformer(4490, 4548)


def test_to_metric_validates_lon_lat():
    with pytest.raises(InvalidCoordinates) as err:
        to_metric(49.589, 117.447)
    assert "经纬度可能颠倒" in err.value.message_zh
    with pytest.raises(InvalidCoordinates):
        to_metric(float("nan"), 49.5)


def test_point_path_equals_the_array_functions():
    rng = np.random.default_rng(11)
    lon, lat = rng.uniform(115.5, 118.5, 200), rng.uniform(48.0, 50.5, 200)
    for crs in ("EPSG:4490", "EPSG:4326", "cgcs2000", 4326):
        for a, b in zip(lon.tolist(), lat.tolist()):
            glon, glat = to_storage(a, b, crs)
            e, n = to_metric(glon, glat)
            assert point_to_storage_metric(a, b, crs) == (float(glon), float(glat), float(e), float(n))
    e, n = to_metric(117.45, 49.59)
    for crs, axis, x, y in (("EPSG:4548", "xy", e, n), ("EPSG:4548", "survey", n, e), ("EPSG:4527", "xy", e + 39e6, n)):
        glon, glat, e2, n2 = point_to_storage_metric(float(x), float(y), crs, axis_order=axis)
        assert (glon, glat) == pytest.approx((117.45, 49.59), abs=1e-9)
        assert (e2, n2) == pytest.approx((float(e), float(n)), abs=1e-6)


@pytest.mark.parametrize(("x", "y", "crs"), [
    (float("nan"), 49.5, "EPSG:4490"), (117.0, float("inf"), "EPSG:4490"), (49.59, 117.45, "EPSG:4490"),
    (181.0, 49.0, "EPSG:4326"), (30.0, 20.0, "EPSG:4490"), (500000.0, 5500000.0, "EPSG:4490"),
    (117.45, 49.59, "EPSG:3857"),
])
def test_point_path_refuses_what_the_array_functions_refuse(x, y, crs):
    with pytest.raises((InvalidCoordinates, UnknownCRS)) as caught:
        point_to_storage_metric(x, y, crs)
    with pytest.raises(type(caught.value)) as expected:
        to_metric(*to_storage(x, y, crs))
    assert caught.value.message_zh == expected.value.message_zh
