import random

import pytest

from app.errors import InputTooLarge, InvalidCoordinates, ZoningError
from app.geo.dms import parse_dms, parse_dms_pair

LON = 117 + 26 / 60 + 48.5 / 3600
LAT = 49 + 35 / 60 + 20.1 / 3600


@pytest.mark.parametrize(
    "text",
    [
        "117度26分48.5秒",
        "117°26′48.5″",
        "117°26'48.5\"",
        "117°26’48.5”",
        "117°26'48.5''",
        "117° 26' 48.5\" E",
        "117°26′48.5″E",
        "E117°26′48.5″",
        "e 117°26′48.5″",
        "东经117°26′48.5″",
        "东经117度26分48.5秒",
        "经度：117°26′48.5″",
        "117:26:48.5",
        "117 26 48.5",
        "１１７°２６′４８.５″",
        "  117º26′48.5″  ",
    ],
)
def test_longitude_forms(text):
    assert parse_dms(text) == pytest.approx(LON, abs=1e-12)


@pytest.mark.parametrize("text", ["N49°35′20.1″", "北纬49度35分20.1秒", "49°35′20.1″N", "纬度:49:35:20.1"])
def test_latitude_forms(text):
    assert parse_dms(text) == pytest.approx(LAT, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("117°26.5′", 117 + 26.5 / 60),
        ("117度26.5分", 117 + 26.5 / 60),
        ("117 26.5", 117 + 26.5 / 60),
        ("117.4468", 117.4468),
        ("117.4468°", 117.4468),
        ("117度", 117.0),
        ("49", 49.0),
    ],
)
def test_degrees_minutes_and_decimal(text, expected):
    assert parse_dms(text) == pytest.approx(expected, abs=1e-12)


def test_axis_argument_checks_range_and_label():
    assert parse_dms("49°35′20.1″", axis="lat") == pytest.approx(LAT, abs=1e-12)
    with pytest.raises(InvalidCoordinates) as err:
        parse_dms("117°26′48.5″", axis="lat")
    assert "超出纬度范围" in err.value.message_zh
    with pytest.raises(InvalidCoordinates) as err:
        parse_dms("N49°35′20.1″", axis="lon")
    assert "标注为纬度" in err.value.message_zh


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("117°26′60″", "秒值 60 不小于 60"),
        ("117°60′", "分值 60 不小于 60"),
        ("117度75分3秒", "分值 75"),
        ("-117°26′48.5″", "含负号"),
        ("117°-26′48.5″", "含负号"),
        ("W117°26′48.5″", "西经"),
        ("117°26′48.5″ W", "西经"),
        ("西经117°26′48.5″", "西经"),
        ("S49°35′20.1″", "南纬"),
        ("南纬49度35分20.1秒", "南纬"),
        ("abc", "无法识别"),
        ("", "无法识别"),
        ("117°26′48.5″48″", "无法识别"),
        ("117.5°26′", "无法识别"),
        ("117:26:", "无法识别"),
        ("117°26′48.5″ 1", "无法识别"),
        ("E117°26′48.5″N", "无法识别"),
        ("经度 N49°", "无法识别"),
        ("200", "超出角度范围"),
        ("117°26′48.5″N", "超出纬度范围"),
    ],
)
def test_single_angle_errors_quote_the_text(text, fragment):
    with pytest.raises(InvalidCoordinates) as err:
        parse_dms(text)
    assert fragment in err.value.message_zh
    assert f"“{text.strip()}”" in err.value.message_zh or text.strip() == ""
    assert err.value.context["text"] == text.strip()


def test_too_long_and_non_text():
    with pytest.raises(InputTooLarge):
        parse_dms("1" * 1000)
    with pytest.raises(InvalidCoordinates):
        parse_dms(117.4)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "117度26分48.5秒,49度35分20.1秒",
        "117度26分48.5秒，49度35分20.1秒",
        "117°26′48.5″; 49°35′20.1″",
        "117°26′48.5″；49°35′20.1″",
        "117°26′48.5″ 49°35′20.1″",
        "117° 26' 48.5\" E 49° 35' 20.1\" N",
        "N49°35′20.1″, E117°26′48.5″",
        "北纬49度35分20.1秒 东经117度26分48.5秒",
        "49°35′20.1″N 117°26′48.5″",
        "117 26 48.5 49 35 20.1",
        "117:26:48.5,49:35:20.1",
    ],
)
def test_pairs(text):
    lon, lat = parse_dms_pair(text)
    assert lon == pytest.approx(LON, abs=1e-12)
    assert lat == pytest.approx(LAT, abs=1e-12)


def test_decimal_pair():
    assert parse_dms_pair("117.4468 49.5889") == (117.4468, 49.5889)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("117 26 49 35", "多种拆分方式"),
        ("49°35′20.1″,117°26′48.5″", "经纬度可能颠倒"),
        ("E117,E118", "都标注为经度"),
        ("117,49,50", "恰好包含两个坐标"),
        ("117°26′48.5″,", "恰好包含两个坐标"),
        ("117°26′48.5″", "无法把"),
        ("117°26′68″ 49°35′20″", "秒值 68"),
        ("117°26′48.5″,abc", "无法识别的度分秒坐标“abc”"),
        ("W117°26′48.5″,N49°", "西经"),
    ],
)
def test_pair_errors(text, fragment):
    with pytest.raises(InvalidCoordinates) as err:
        parse_dms_pair(text)
    assert fragment in err.value.message_zh


def test_fuzzed_text_only_raises_domain_errors():
    rng = random.Random(20240618)
    alphabet = list("0123456789.,;:°′″'\" -度分秒ENSWenws东经北纬南西，；\t") + ["\x00", "１", "º", "∞", "nan"]
    seeds = ["117度26分48.5秒,49度35分20.1秒", "E117°26′48.5″ N49°35′20.1″", "117:26:48.5 49:35:20.1"]
    for _ in range(3000):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(text) + 1)
            if op < 0.4:
                text.insert(pos, rng.choice(alphabet))
            elif op < 0.8 and text:
                del text[min(pos, len(text) - 1)]
            elif text:
                text[min(pos, len(text) - 1)] = rng.choice(alphabet)
        candidate = "".join(text)
        for parse in (parse_dms, parse_dms_pair):
            try:
                parse(candidate)
            except ZoningError:
                pass
