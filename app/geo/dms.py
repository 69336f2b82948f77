"""Degrees-minutes-seconds text as EIA forms write it (117度26分48.5秒, E117°26′48.5″, 北纬49°35′20.1″, ...).

Sites in Manzhouli are east and north: a W or S hemisphere, a negative value, minutes or seconds of 60 or more
are refused rather than guessed at. Results are decimal degrees (CGCS2000 unless the caller says otherwise).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from app.errors import InputTooLarge, InvalidCoordinates

MAX_DMS_CHARS = 200

Axis = Literal["lon", "lat"]

_PRE_NORMALISE = str.maketrans({"º": "°", "˚": "°", "ʹ": "′", "ʺ": "″", "〃": "″", "−": "-", "－": "-"})
_DEG_MARKS = {"度", "°"}
_MIN_MARKS = {"分", "′", "'", "’"}
_SEC_MARKS = {"秒", "′′", "''", "’’", '"', "”"}
_HEMISPHERES = {"E": "E", "N": "N", "S": "S", "W": "W", "东经": "E", "北纬": "N", "南纬": "S", "西经": "W"}
_HEMISPHERE_AXES: dict[str, Axis] = {"E": "lon", "W": "lon", "N": "lat", "S": "lat"}
_LABEL_AXES: dict[str, Axis] = {"经度": "lon", "纬度": "lat"}
_HEMI_PATTERN = r"东经|北纬|南纬|西经|[ENSWensw]"
_FRAME = re.compile(
    rf"^(?:(?P<label>经度|纬度)\s*[:=]?\s*)?(?P<pre>{_HEMI_PATTERN})?\s*(?P<body>.*?)\s*(?P<post>{_HEMI_PATTERN})?$",
    re.DOTALL,
)
_COMPONENT = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<mark>度|°|分|′′|′|''|'|’’|’|秒|″|\"|”|:)?\s*")
_SLOT_NAMES_ZH = ("度", "分", "秒")
_EXAMPLES_ZH = "应写作如 117°26′48.5″、117度26分48.5秒、E117°26′48.5″、117:26:48.5 或 117.4468"


@dataclass(frozen=True)
class _Parsed:
    text: str  # as the caller wrote it (trimmed), for messages
    parts: tuple[str, ...]  # degrees, [minutes, [seconds]] as written
    hemisphere: str | None  # E/N/S/W
    axis: Axis | None  # from the hemisphere or a 经度/纬度 label


def _shown(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text.translate(_PRE_NORMALISE)).replace("″", "′′").strip()


def _error(message_zh: str, text: str, detail: str, **context: object) -> InvalidCoordinates:
    return InvalidCoordinates(message_zh, detail=detail, text=_shown(text), **context)


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidCoordinates(
            f"度分秒坐标应为文本，收到的是 {type(text).__name__}。",
            detail=f"DMS input of type {type(text).__name__}",
        )
    if len(text) > MAX_DMS_CHARS:
        raise InputTooLarge(
            f"度分秒坐标文本过长（{len(text)} 个字符，上限 {MAX_DMS_CHARS}）。",
            detail=f"DMS text of {len(text)} chars",
            length=len(text),
            limit=MAX_DMS_CHARS,
        )
    if "-" in _normalise(text):
        raise _error(
            f"坐标“{_shown(text)}”含负号：满洲里位于东经、北纬，度分秒各部分都应为正数。",
            text,
            "negative DMS component",
        )
    return text


def _syntax(text: str) -> _Parsed | None:
    """Split one angle into hemisphere and parts; None when it does not read as an angle at all."""
    frame = _FRAME.match(_normalise(text))
    if frame is None or not frame["body"]:
        return None
    pre = _HEMISPHERES.get((frame["pre"] or "").upper())
    post = _HEMISPHERES.get((frame["post"] or "").upper())
    if pre and post and pre != post:
        return None
    hemisphere = pre or post
    body, pos, parts, slots = frame["body"], 0, [], []
    while pos < len(body):
        m = _COMPONENT.match(body, pos)
        if m is None or m.end() == pos:
            return None
        mark = m["mark"]
        slot = len(parts)
        if mark in _DEG_MARKS:
            slot = 0
        elif mark in _MIN_MARKS:
            slot = 1
        elif mark in _SEC_MARKS:
            slot = 2
        if slot != len(parts) or slot > 2:
            return None
        if mark == ":" and m.end() == len(body):
            return None
        parts.append(m["num"])
        slots.append(slot)
        pos = m.end()
    if not parts or any("." in p for p in parts[:-1]):
        return None
    label_axis = _LABEL_AXES.get(frame["label"] or "")
    hemi_axis = _HEMISPHERE_AXES.get(hemisphere or "")
    if label_axis and hemi_axis and label_axis != hemi_axis:
        return None
    return _Parsed(text.strip(), tuple(parts), hemisphere, label_axis or hemi_axis)


def _value(parsed: _Parsed) -> float:
    if parsed.hemisphere in ("S", "W"):
        name = "南纬" if parsed.hemisphere == "S" else "西经"
        raise _error(
            f"坐标“{_shown(parsed.text)}”为{name}，不在中国境内；满洲里位于东经、北纬，请核对。",
            parsed.text,
            f"hemisphere {parsed.hemisphere} outside China",
            hemisphere=parsed.hemisphere,
        )
    values = [float(p) for p in parsed.parts]
    for slot in (1, 2):
        if len(values) > slot and values[slot] >= 60.0:
            raise _error(
                f"坐标“{_shown(parsed.text)}”的{_SLOT_NAMES_ZH[slot]}值 {parsed.parts[slot]} 不小于 60，"
                f"{_SLOT_NAMES_ZH[slot]}应在 0～60 之间。",
                parsed.text,
                f"{('minutes', 'seconds')[slot - 1]} {values[slot]} >= 60",
                component=("minutes", "seconds")[slot - 1],
            )
    return values[0] + (values[1] / 60.0 if len(values) > 1 else 0.0) + (values[2] / 3600.0 if len(values) > 2 else 0.0)


def _check_range(value: float, axis: Axis | None, parsed: _Parsed, *, swap_hint: bool = False) -> None:
    limit = 90.0 if axis == "lat" else 180.0
    if value <= limit:
        return
    name = {"lat": "纬度", "lon": "经度"}.get(axis or "", "角度")
    hint = "；经纬度可能颠倒（未标注 E/N 或 东经/北纬 时按先经度、后纬度理解）" if swap_hint else ""
    raise _error(
        f"坐标“{_shown(parsed.text)}”换算为 {value:.7g}°，超出{name}范围 0～{limit:g}°{hint}。",
        parsed.text,
        f"{axis or 'angle'} {value} out of range 0..{limit}",
        value=value,
        axis=axis or "",
    )


def _unparseable(text: str) -> InvalidCoordinates:
    return _error(f"无法识别的度分秒坐标“{_shown(text)}”，{_EXAMPLES_ZH}。", text, f"unparseable DMS text {text!r}")


def parse_dms(text: str, *, axis: Axis | None = None) -> float:
    """Parse one angle (DMS, degrees-minutes or decimal, with optional E/N/东经/北纬) to decimal degrees."""
    parsed = _syntax(_check_text(text))
    if parsed is None:
        raise _unparseable(text)
    if axis and parsed.axis and axis != parsed.axis:
        expected = "经度" if axis == "lon" else "纬度"
        raise _error(
            f"坐标“{_shown(text)}”标注为{'经度' if parsed.axis == 'lon' else '纬度'}，而这里需要{expected}。",
            text,
            f"hemisphere says {parsed.axis}, caller expects {axis}",
            axis=axis,
        )
    value = _value(parsed)
    _check_range(value, axis or parsed.axis, parsed)
    return value


def _split_pair(text: str) -> tuple[_Parsed, _Parsed]:
    if re.search(r"[,;、，；]", text):
        pieces = re.split(r"[,;、，；]", text)
        if len(pieces) != 2 or not all(p.strip() for p in pieces):
            raise _error(
                f"“{_shown(text)}”应恰好包含两个坐标（经度和纬度），用逗号或分号分隔。",
                text,
                f"pair text splits into {len(pieces)} pieces",
            )
        first, second = _syntax(pieces[0]), _syntax(pieces[1])
        for piece, parsed in ((pieces[0], first), (pieces[1], second)):
            if parsed is None:
                raise _unparseable(piece)
        return first, second  # type: ignore[return-value]
    tokens = text.split()
    candidates = []
    for k in range(1, len(tokens)):
        first, second = _syntax(" ".join(tokens[:k])), _syntax(" ".join(tokens[k:]))
        if first is not None and second is not None:
            candidates.append((first, second))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise _error(
            f"“{_shown(text)}”可以有多种拆分方式，无法确定经度和纬度的分界。请用逗号分隔，如 117°26′48.5″, 49°35′20.1″。",
            text,
            f"ambiguous whitespace-separated pair ({len(candidates)} readings)",
        )
    raise _error(
        f"无法把“{_shown(text)}”识别为一对经纬度。请用逗号分隔经度和纬度，如 117°26′48.5″, 49°35′20.1″。",
        text,
        "unparseable DMS pair",
    )


def parse_dms_pair(text: str) -> tuple[float, float]:
    """Parse "经度,纬度" in any accepted DMS form to (lon, lat); E/N/东经/北纬 decide the order, else lon first."""
    first, second = _split_pair(_check_text(text))
    if first.axis and second.axis and first.axis == second.axis:
        name = "经度" if first.axis == "lon" else "纬度"
        raise _error(
            f"“{_shown(text)}”中两个坐标都标注为{name}，应一个经度、一个纬度。",
            text,
            f"both halves marked {first.axis}",
        )
    if first.axis == "lat" or second.axis == "lon":
        first, second = second, first
    labelled = bool(first.axis or second.axis)
    lon, lat = _value(first), _value(second)
    _check_range(lon, "lon", first)
    _check_range(lat, "lat", second, swap_hint=not labelled and lon <= 90.0)
    return lon, lat
