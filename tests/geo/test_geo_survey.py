import random
from pathlib import Path

import pytest

from app.errors import InputTooLarge, InvalidCoordinates, InvalidGeometry, InvalidInput, UnknownCRS, ZoningError
from app.geo import survey
from app.geo.crs import from_metric
from app.geo.survey import decode_survey_bytes, parse_survey

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "survey"
TWO_PARCELS = (FIXTURES / "two_parcels_utf8.txt").read_text(encoding="utf-8")


def parse_text(text: str) -> survey.SurveyFile:
    return parse_survey(text.encode("utf-8"))


def test_two_parcels_utf8():
    result = parse_survey((FIXTURES / "two_parcels_utf8.txt").read_bytes())
    assert result.source_crs == "EPSG:4527"
    assert (result.zone, result.zone_width, result.encoding, result.crs) == (39, 3, "utf-8", "EPSG:4548")
    assert result.warnings == ()
    assert result.header["坐标系"] == "2000国家大地坐标系"
    assert result.header["数据产生单位"] == "满洲里市某勘测设计院"
    assert result.header["转换参数"] == ",,,,,,"
    first, second = result.parcels
    assert (first.index, first.code, first.name, first.use, first.sheet) == (
        1, "1", "国际物流园区仓储项目", "仓储用地", "M-50-57",
    )
    assert (first.declared_area, first.point_count, first.line, first.shape) == (6.4668, 6, 13, "面")
    assert first.polygon.area == 64667.8125
    assert first.polygon.bounds == (531000.0, 5493835.5, 531262.5, 5494100.0)
    assert len(first.polygon.interiors) == 0
    assert (second.code, second.name, second.declared_area, second.point_count, second.line) == (
        "2", "光伏发电项目用地", 11.2, 10, 20,
    )
    assert len(second.polygon.interiors) == 1
    assert second.polygon.area == 112000.0
    assert second.polygon.interiors[0].bounds == (533150.0, 5495100.0, 533250.0, 5495180.0)


def test_parcels_land_in_manzhouli():
    result = parse_survey((FIXTURES / "two_parcels_utf8.txt").read_bytes())
    for parcel in result.parcels:
        c = parcel.polygon.centroid
        lon, lat = from_metric(c.x, c.y)
        assert 117.40 < lon < 117.50 and 49.55 < lat < 49.62


def test_gbk_file_without_zone_prefix():
    data = (FIXTURES / "one_parcel_gbk.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    result = parse_survey(data)
    assert (result.source_crs, result.zone, result.encoding) == ("EPSG:4548", 39, "gb18030")
    (parcel,) = result.parcels
    assert (parcel.code, parcel.name, parcel.use, parcel.sheet) == ("ZD-01", "扎赉诺尔路北侧建材项目", "工业用地", "")
    assert parcel.polygon.area == 100950.0
    assert parcel.polygon.bounds == (534090.0, 5493130.0, 534480.0, 5493420.0)


def test_six_degree_zone_20_with_bom_is_stripped_to_cm_117():
    result = parse_survey((FIXTURES / "zone20_6deg_bom.txt").read_bytes())
    assert (result.source_crs, result.zone, result.zone_width, result.encoding) == ("EPSG:4498", 20, 6, "utf-8-sig")
    assert result.header["格式版本号"] == "1.01版本"
    assert result.parcels[0].polygon.bounds == (532300.0, 5495050.0, 532500.0, 5495200.0)


def test_missing_zone_information_is_assumed_with_a_warning():
    text = TWO_PARCELS.replace("带号=39\n", "").replace("3953", "53").replace("3951", "51")
    result = parse_text(text)
    assert result.source_crs == "EPSG:4548"
    assert result.warnings == ("文件未注明带号且东坐标不含带号，按3 度带第 39 带（中央经线 117°E）处理。",)


def test_header_zone_39_with_unprefixed_eastings():
    result = parse_text(TWO_PARCELS.replace("3953", "53").replace("3951", "51"))
    assert (result.source_crs, result.zone) == ("EPSG:4548", 39)
    assert result.parcels[1].polygon.area == 112000.0


def test_missing_datum_and_nonzero_transformation_parameters_warn():
    text = TWO_PARCELS.replace("坐标系=2000国家大地坐标系\n", "").replace("转换参数=,,,,,,", "转换参数=1,2,3,0,0,0,0")
    result = parse_text(text)
    assert len(result.warnings) == 2
    assert "未注明坐标系" in result.warnings[0] and "转换参数" in result.warnings[1]


def test_windows_line_endings_and_blank_lines():
    result = parse_survey(TWO_PARCELS.replace("\n", "\r\n\r\n").encode("gbk"))
    assert [p.line for p in result.parcels] == [25, 39]


# --- errors ---------------------------------------------------------------------------------------------------


def test_missing_parcel_section():
    with pytest.raises(InvalidInput) as err:
        parse_text(TWO_PARCELS.split("[地块坐标]")[0])
    assert "缺少 [地块坐标] 节" in err.value.message_zh
    assert err.value.context == {"section": "地块坐标"}


def test_missing_parcel_section_heading():
    with pytest.raises(InvalidInput) as err:
        parse_text(TWO_PARCELS.replace("[地块坐标]\n", ""))
    assert "缺少 [地块坐标] 节标题" in err.value.message_zh
    assert err.value.context["line"] == 12


def test_missing_header_section():
    with pytest.raises(InvalidInput) as err:
        parse_text("[地块坐标]" + TWO_PARCELS.split("[地块坐标]")[1])
    assert "缺少 [属性描述] 节" in err.value.message_zh


def test_content_before_any_section():
    with pytest.raises(InvalidInput) as err:
        parse_text("hello\n" + TWO_PARCELS)
    assert err.value.context["line"] == 1


def test_no_parcels():
    with pytest.raises(InvalidInput) as err:
        parse_text(TWO_PARCELS.split("[地块坐标]")[0] + "[地块坐标]\n")
    assert "没有任何地块" in err.value.message_zh


def test_declared_point_count_mismatch():
    with pytest.raises(InvalidInput) as err:
        parse_text(TWO_PARCELS.replace("6,6.4668,1,", "7,6.4668,1,"))
    assert err.value.context == {"line": 13, "parcel_code": "1", "declared_points": 7, "found_points": 6}
    assert "第 13 行" in err.value.message_zh and "国际物流园区仓储项目" in err.value.message_zh


@pytest.mark.parametrize("bad", ["5494100.0a0", "nan", "inf", "", "1e6", "５４９４１００"])
def test_non_numeric_coordinate_names_the_line(bad):
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(TWO_PARCELS.replace("J2,1,5494100.000,", f"J2,1,{bad},"))
    assert err.value.context["line"] == 15
    assert "X 坐标" in err.value.message_zh and "不是有效的数字" in err.value.message_zh


def test_unclosed_ring_names_parcel_and_ring():
    closing = "J8,2,5495180.000,39533250.000\nJ5,2,5495180.000,39533150.000\n"
    text = TWO_PARCELS.replace(closing, "J8,2,5495180.000,39533250.000\n")
    text = text.replace("10,11.2000,2,", "9,11.2000,2,")
    with pytest.raises(InvalidGeometry) as err:
        parse_text(text)
    assert "地块 2（光伏发电项目用地） 第 2 圈（内环" in err.value.message_zh
    assert "未闭合" in err.value.message_zh
    assert err.value.context["parcel_code"] == "2" and err.value.context["ring"] == 2


def test_ring_with_too_few_points():
    text = TWO_PARCELS.replace(
        "J5,2,5495180.000,39533150.000\nJ6,2,5495100.000,39533150.000\nJ7,2,5495100.000,39533250.000\n"
        "J8,2,5495180.000,39533250.000\nJ5,2,5495180.000,39533150.000\n",
        "J5,2,5495180.000,39533150.000\nJ6,2,5495100.000,39533150.000\nJ5,2,5495180.000,39533150.000\n",
    ).replace("10,11.2000,2,", "8,11.2000,2,")
    with pytest.raises(InvalidGeometry) as err:
        parse_text(text)
    assert "只有 3 个点" in err.value.message_zh
    assert err.value.context["ring"] == 2


def test_hole_outside_shell():
    text = TWO_PARCELS.replace(",3953315", ",3953515").replace(",3953325", ",3953525")
    with pytest.raises(InvalidGeometry) as err:
        parse_text(text)
    assert "内环位于外环之外" in err.value.message_zh
    assert "地块 2（光伏发电项目用地）" in err.value.message_zh
    assert err.value.context["line"] == 20 and err.value.context["parcel_code"] == "2"
    assert err.value.context["location"] == [535150.0, 5495180.0]


def test_self_intersecting_parcel_reports_location():
    text = TWO_PARCELS.replace("J2,1,5494100.000,39531262.500", "J2,1,5493835.500,39531262.500").replace(
        "J4,1,5493835.500,39531120.000", "J4,1,5494100.000,39531120.000"
    )
    with pytest.raises(InvalidGeometry) as err:
        parse_text(text)
    assert "多边形自相交" in err.value.message_zh and "位置约在" in err.value.message_zh
    assert err.value.context["reason"].startswith("Self-intersection")


def test_ring_points_not_contiguous_and_first_ring_not_one():
    text = TWO_PARCELS.replace("J4,1,5495000.000,39533000.000", "J4,2,5495000.000,39533000.000")
    with pytest.raises(InvalidGeometry) as err:
        parse_text(text)
    assert "不连续" in err.value.message_zh
    with pytest.raises(InvalidGeometry) as err:
        parse_text(TWO_PARCELS.replace("J1,1,", "J1,3,", 1))
    assert "应为 1（外环）" in err.value.message_zh


@pytest.mark.parametrize(("zone", "cm"), [(40, "120°E"), (38, "114°E")])
def test_other_zone_prefix_is_refused_naming_zone(zone, cm):
    text = TWO_PARCELS.replace(",3953", f",{zone}53").replace(",3951", f",{zone}51").replace("带号=39", f"带号={zone}")
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert f"3 度带第 {zone} 带（中央经线 {cm}）" in err.value.message_zh
    assert err.value.context["zone_found"] == zone and err.value.context["zone_expected"] == 39


def test_prefix_disagreeing_with_header_zone():
    text = TWO_PARCELS.replace(",3953", ",4053").replace(",3951", ",4051")
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert "带号为 39" in err.value.message_zh and "带号为 40" in err.value.message_zh


def test_header_zone_other_than_39_without_prefix():
    text = TWO_PARCELS.replace("3953", "53").replace("3951", "51").replace("带号=39", "带号=41")
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert "3 度带第 41 带（中央经线 123°E）" in err.value.message_zh


def test_six_degree_zone_other_than_20():
    text = TWO_PARCELS.replace(",3953", ",2153").replace(",3951", ",2151").replace("带号=39", "带号=21")
    text = text.replace("几度分带=3", "几度分带=6")
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert "6 度带第 21 带（中央经线 123°E）" in err.value.message_zh


def test_three_degree_band_with_zone_20_is_refused():
    text = TWO_PARCELS.replace(",3953", ",2053").replace(",3951", ",2051").replace("带号=39", "带号=20")
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert "3 度带第 20 带（中央经线 60°E）" in err.value.message_zh


def test_swapped_x_and_y():
    text = TWO_PARCELS.replace("J1,1,5494100.000,39531000.000", "J1,1,39531000.000,5494100.000", 1)
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert "可能颠倒" in err.value.message_zh and err.value.context["line"] == 14


def test_mixed_prefixes():
    text = TWO_PARCELS.replace("J2,1,5494100.000,39531262.500", "J2,1,5494100.000,531262.500")
    with pytest.raises(InvalidCoordinates) as err:
        parse_text(text)
    assert "应一致" in err.value.message_zh and err.value.context["line"] == 15


@pytest.mark.parametrize("datum", ["西安80坐标系", "1954北京坐标系", "WGS84"])
def test_other_datums_are_refused(datum):
    with pytest.raises(UnknownCRS) as err:
        parse_text(TWO_PARCELS.replace("2000国家大地坐标系", datum))
    assert "CGCS2000" in err.value.message_zh and err.value.context["line"] == 5


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("投影类型=高斯克吕格", "投影类型=UTM", "高斯-克吕格"),
        ("计量单位=米", "计量单位=英尺", "应为米"),
        ("几度分带=3", "几度分带=5", "3 或 6"),
        ("带号=39", "带号=三十九", "带号"),
        ("精度=0.001", "精度", "键=值"),
        ("[地块坐标]", "[地块坐标]\n[其他]", "未知的节"),
        ("[地块坐标]", "[属性描述]", "重复"),
        ("数据产生日期=2024-06-18", "数据产生日期=2024-06-18\n坐标系=CGCS2000", "重复"),
        ("J1,1,5494100.000,39531000.000\n", "J1,1,5494100.000\n", "无法识别"),
        ("J1,1,5494100.000,39531000.000\n", "J1,一,5494100.000,39531000.000\n", "圈号"),
        ("6,6.4668,1,", "六,6.4668,1,", "点数"),
        ("6,6.4668,1,", "6,abc,1,", "面积"),
        (",面,M-50-57,仓储用地,@", ",线,M-50-57,仓储用地,@", "应为“面”"),
        ("6,6.4668,1,国际物流园区仓储项目,面,M-50-57,仓储用地,@", "6,6.4668,1,@", "8 个字段"),
    ],
)
def test_malformed_lines(old, new, fragment):
    with pytest.raises(ZoningError) as err:
        parse_text(TWO_PARCELS.replace(old, new, 1))
    assert fragment in err.value.message_zh
    assert isinstance(err.value, InvalidInput)


def test_point_before_parcel_line():
    text = TWO_PARCELS.replace("[地块坐标]\n", "[地块坐标]\nJ0,1,5494100.000,39531000.000\n")
    with pytest.raises(InvalidInput) as err:
        parse_text(text)
    assert err.value.context["line"] == 13 and "缺少地块行" in err.value.message_zh


def test_extra_fields_before_at_are_kept():
    text = TWO_PARCELS.replace(",仓储用地,@", ",仓储用地,0508,@")
    assert parse_text(text).parcels[0].extra_fields == ("0508",)


# --- encoding and size ----------------------------------------------------------------------------------------


def test_undecodable_bytes_are_refused():
    with pytest.raises(InvalidInput) as err:
        decode_survey_bytes(b"[\xff\xfe\xff\x80\xff]")
    assert "UTF-8" in err.value.message_zh and "GBK" in err.value.message_zh


def test_utf16_is_refused():
    with pytest.raises(InvalidInput) as err:
        parse_survey(TWO_PARCELS.encode("utf-16"))
    assert "UTF-16" in err.value.message_zh


def test_broken_utf8_after_bom():
    with pytest.raises(InvalidInput) as err:
        parse_survey(b"\xef\xbb\xbf[\xe5\xb1]")
    assert "BOM" in err.value.message_zh


def test_empty_and_binary_and_wrong_type():
    with pytest.raises(InvalidInput):
        parse_survey(b"  \n ")
    with pytest.raises(InvalidInput) as err:
        parse_survey(b"[\xe5\xb1\x9e\xe6\x80\xa7\xe6\x8f\x8f\xe8\xbf\xb0]\n\x00\x01")
    assert "控制字符" in err.value.message_zh
    with pytest.raises(InvalidInput):
        parse_survey(TWO_PARCELS)  # type: ignore[arg-type]


def test_size_caps(monkeypatch):
    with pytest.raises(InputTooLarge):
        parse_survey(b" " * (survey.MAX_SURVEY_BYTES + 1))
    monkeypatch.setattr(survey, "MAX_SURVEY_PARCELS", 1)
    with pytest.raises(InputTooLarge) as err:
        parse_text(TWO_PARCELS)
    assert err.value.context["line"] == 20
    monkeypatch.setattr(survey, "MAX_SURVEY_PARCELS", 10)
    monkeypatch.setattr(survey, "MAX_SURVEY_POINTS", 8)
    with pytest.raises(InputTooLarge) as err:
        parse_text(TWO_PARCELS)
    assert err.value.context["limit"] == 8


def test_declared_point_count_over_cap():
    with pytest.raises(InputTooLarge):
        parse_text(TWO_PARCELS.replace("6,6.4668,1,", "99999999,6.4668,1,"))


def test_fuzzed_files_only_raise_domain_errors():
    rng = random.Random(7)
    lines = TWO_PARCELS.splitlines()
    pieces = ["", ",", "@", "[", "]", "=", "nan", "-1", "39", "J1", "1", "\t", "地块", "99999999999", "0"]
    for _ in range(1500):
        mutated = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(mutated))
            op = rng.random()
            if op < 0.3:
                del mutated[i]
            elif op < 0.6:
                mutated.insert(i, rng.choice(mutated))
            else:
                chars = list(mutated[i])
                pos = rng.randrange(len(chars) + 1)
                chars[pos:pos + rng.randint(0, 3)] = rng.choice(pieces)
                mutated[i] = "".join(chars)
        try:
            parse_text("\n".join(mutated))
        except ZoningError:
            pass
