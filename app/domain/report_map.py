"""The map figures of the assessment report, drawn server-side with matplotlib (no online tiles, no pyplot).

`site_map_png` draws the site over the control units (coloured by type), the ecological red line, the city
boundary and the layers the site touches or lies near, with legend, scale bar, north arrow, a Gauss-Krüger
coordinate grid (zone 39: eastings carry the zone prefix 39, as the boundary-point table does) and an inset of the
whole territory. `land_cover_png` draws the land-cover raster around the site. Both are deterministic: the same
assessment and catalog give the same PNG bytes (Agg backend, no timestamps, no software tag in the metadata).
Figures are built with the object API (`Figure` + `FigureCanvasAgg`), so concurrent requests do not share state.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # before anything touches a backend; the report never opens a window
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import PathPatch, Patch, Rectangle  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from app.domain.catalog import Catalog  # noqa: E402
from app.domain.schema import LAND_COVER_CLASSES, LAND_COVER_NODATA, LAYERS  # noqa: E402
from app.geo.crs import ZONE_FACTOR, GK_ZONE, to_metric  # noqa: E402

FONT_PATH = Path(__file__).resolve().parents[1] / "web" / "static" / "fonts" / "wqy-microhei.ttf"
font_manager.fontManager.addfont(str(FONT_PATH))
FONT = font_manager.FontProperties(fname=str(FONT_PATH))
ZONE_OFFSET = GK_ZONE * ZONE_FACTOR  # EPSG:4548 easting + this = EPSG:4527 easting (with zone prefix)

UNIT_COLOURS = {
    "1": ["#b7e1a1", "#9fd38a", "#c9ebb8", "#8cc97a", "#d6f0c9"],
    "2": ["#fdd0a2", "#fdbb84", "#fee3c8", "#f9a870", "#fdc896", "#fbd9b5", "#f6b27d", "#fde0bd", "#f3a66a",
          "#fccd9c"],
    "3": ["#c6dbef", "#9ecae1", "#deebf7"],
}
UNIT_TYPE_LEGEND = {"1": "优先保护单元", "2": "重点管控单元", "3": "一般管控单元"}
RED_LINE = "#d7301f"
SITE = "#0b2fa8"
# Outline styles for the element layers a site touches or is near (colour, line style, fill alpha).
LAYER_STYLE: dict[str, tuple[str, str, float]] = {
    "nature_reserve": ("#1b7837", "--", 0.10),
    "wetland_parks": ("#2166ac", "-.", 0.10),
    "drinking_water": ("#08519c", "-", 0.22),
    "basic_grassland": ("#66a61e", ":", 0.12),
    "basic_farmland": ("#b8860b", "-", 0.25),
    "urban_boundary": ("#6a3d9a", "-", 0.0),
    "no_burn_zone": ("#4d4d4d", ":", 0.0),
    "mining_areas": ("#7b5a45", "-", 0.30),
    "water_env_zones": ("#1f78b4", (0, (6, 2, 1, 2)), 0.0),
    "air_env_zones": ("#969696", (0, (2, 2)), 0.0),
    "lakes": ("#3a7bd5", "-", 0.45),
}
NICE_LENGTHS = (20, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000)


# -- geometry helpers -------------------------------------------------------------------------------------------


def site_metric(doc: dict[str, Any]):
    """The site of a stored assessment in EPSG:4548."""
    geom = shape(doc["site"]["geometry"])
    return shapely.transform(geom, lambda xy: np.column_stack(to_metric(xy[:, 0], xy[:, 1])))


def _polygons(geom) -> list:
    return [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon" and not g.is_empty]


def _path(geom) -> MplPath | None:
    """A compound path (holes included) for a polygonal geometry or a list of them."""
    verts, codes = [], []
    polys = [p for g in geom for p in _polygons(g)] if isinstance(geom, (list, tuple)) else _polygons(geom)
    for poly in polys:
        for ring in (poly.exterior, *poly.interiors):
            xy = np.asarray(ring.coords)
            if len(xy) < 4:
                continue
            verts.append(xy)
            codes.append(np.r_[MplPath.MOVETO, np.full(len(xy) - 2, MplPath.LINETO), MplPath.CLOSEPOLY])
    if not verts:
        return None
    return MplPath(np.concatenate(verts), np.concatenate(codes).astype(np.uint8))


def _add_poly(ax, geom, **kw) -> None:
    path = _path(geom)
    if path is not None:
        ax.add_patch(PathPatch(path, **kw))


def _lines(ax, geom, **kw) -> None:
    for part in shapely.get_parts(geom):
        if part.geom_type in ("LineString", "LinearRing"):
            xy = np.asarray(part.coords)
            ax.plot(xy[:, 0], xy[:, 1], **kw)
        elif part.geom_type == "Polygon":
            for ring in (part.exterior, *part.interiors):
                xy = np.asarray(ring.coords)
                ax.plot(xy[:, 0], xy[:, 1], **kw)


def view_box(site, *, aspect: float = 1.5, min_span: float = 1800.0) -> tuple[float, float, float, float]:
    """The map extent around a site: padded, at least `min_span` metres high, width/height = `aspect`."""
    minx, miny, maxx, maxy = site.bounds
    w, h = maxx - minx, maxy - miny
    pad = max(0.25 * max(w, h), 250.0)
    w, h = w + 2 * pad, h + 2 * pad
    h = max(h, w / aspect, min_span)
    w = max(w, h * aspect)
    h = w / aspect
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _in_view(geoms: Iterable, box) -> list[tuple[int, Any]]:
    """(row, geometry clipped to the box) for every feature that reaches into it."""
    out = []
    for row, geom in enumerate(geoms):
        if geom is None or not shapely.intersects(geom, box):
            continue
        clipped = shapely.clip_by_rect(geom, *box.bounds)
        if not clipped.is_empty:
            out.append((row, clipped))
    return out


def _unit_colour(code_type: str, index: int) -> str:
    palette = UNIT_COLOURS.get(code_type, UNIT_COLOURS["3"])
    return palette[index % len(palette)]


def _unit_colours(catalog: Catalog) -> list[str]:
    counters: dict[str, int] = {}
    colours = []
    for rec in catalog.units.records:
        kind = str(rec["ZHGKDYFL"])
        colours.append(_unit_colour(kind, counters.get(kind, 0)))
        counters[kind] = counters.get(kind, 0) + 1
    return colours


# -- furniture --------------------------------------------------------------------------------------------------


def _nice_length(span: float) -> float:
    target = span / 4
    return max([n for n in NICE_LENGTHS if n <= target] or [NICE_LENGTHS[0]])


def _scale_bar(ax, box) -> None:
    minx, miny, maxx, maxy = box
    length = _nice_length(maxx - minx)
    x0, y0 = minx + 0.04 * (maxx - minx), miny + 0.05 * (maxy - miny)
    hgt = 0.012 * (maxy - miny)
    ax.add_patch(Rectangle((x0 - 0.015 * (maxx - minx), y0 - 0.6 * hgt), length + 0.03 * (maxx - minx), 5.2 * hgt,
                           facecolor="white", edgecolor="none", alpha=0.8, zorder=20))
    half = length / 2
    for i, colour in enumerate(("black", "white")):
        ax.add_patch(Rectangle((x0 + i * half, y0), half, hgt, facecolor=colour, edgecolor="black", lw=0.6, zorder=21))
    label = (lambda v: f"{v / 1000:g}") if length >= 1000 else (lambda v: f"{v:g}")
    unit = "km" if length >= 1000 else "m"
    for v in (0, half, length):
        ax.text(x0 + v, y0 + 1.6 * hgt, label(v), ha="center", va="bottom", fontsize=6.5, zorder=22)
    ax.text(x0 + length + 0.012 * (maxx - minx), y0 + 0.5 * hgt, unit, ha="left", va="center", fontsize=6.5, zorder=22)


def _north_arrow(ax) -> None:
    ax.annotate("", xy=(0.05, 0.955), xytext=(0.05, 0.845), xycoords="axes fraction",
                arrowprops={"arrowstyle": "-|>,head_length=0.8,head_width=0.4", "color": "black", "lw": 1.4},
                zorder=22)
    ax.text(0.05, 0.965, "北", transform=ax.transAxes, ha="center", va="bottom", fontproperties=FONT, fontsize=9,
            zorder=22, bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8})


def _ticks(lo: float, hi: float, n: int) -> list[float]:
    """Round tick values inside (lo, hi), none so close to the ends that corner labels collide."""
    values = MaxNLocator(n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    return [float(v) for v in values if lo + 0.07 * span <= v <= hi - 0.03 * span]


def _gk_grid(ax) -> None:
    """Ticks and grid in Gauss-Krüger zone 39 metres: Y (easting, with zone prefix) below, X (northing) left."""
    ax.set_xticks(_ticks(*ax.get_xlim(), 5))
    ax.set_yticks(_ticks(*ax.get_ylim(), 5))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v + ZONE_OFFSET:.0f}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.tick_params(labelsize=6, length=2.5, pad=1.5)
    for label in ax.get_yticklabels():
        label.set_rotation(90)
        label.set_va("center")
    ax.grid(True, color="#555555", lw=0.35, ls=(0, (4, 3)), alpha=0.7, zorder=15)
    ax.set_xlabel("Y（东坐标，m，含带号 39）　CGCS2000 高斯-克吕格 3°带 第39带（中央经线 117°E）",
                  fontproperties=FONT, fontsize=6.5, labelpad=2)
    ax.set_ylabel("X（北坐标，m）", fontproperties=FONT, fontsize=6.5, labelpad=2)


def _label(ax, text: str, xy, *, fontsize: float = 6.0, colour: str = "#222222", z: int = 18) -> None:
    ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=fontsize, color=colour, fontproperties=FONT,
            zorder=z, clip_on=True, bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75})


def _png(fig: Figure, dpi: int) -> bytes:
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return out.getvalue()


# -- the figures ------------------------------------------------------------------------------------------------


def site_map_png(doc: dict[str, Any], catalog: Catalog, *, dpi: int = 200) -> bytes:
    """The site over units, red line and touched layers, with legend, scale bar, north arrow, grid and inset."""
    site = site_metric(doc)
    box_t = view_box(site)
    box = shapely.box(*box_t)
    fig = Figure(figsize=(6.9, 5.25))
    ax = fig.add_axes((0.085, 0.175, 0.9, 0.805))
    ax.set_facecolor("#f4f4f4")
    handles: list[Any] = []
    # Control units, coloured by type, with their codes.
    colours = _unit_colours(catalog)
    units = catalog.units
    shown_types: set[str] = set()
    for row, clipped in _in_view(units.metric, box):
        kind = str(units.records[row]["ZHGKDYFL"])
        shown_types.add(kind)
        _add_poly(ax, clipped, facecolor=colours[row], edgecolor="#5a5a5a", lw=0.7, zorder=1)
    for kind in sorted(shown_types):
        handles.append(Patch(facecolor=UNIT_COLOURS[kind][0], edgecolor="#5a5a5a", lw=0.6,
                             label=UNIT_TYPE_LEGEND.get(kind, kind)))
    # Element layers the site touches or is near (drawn under the red line).
    wanted = [entry["layer"] for entry in doc.get("layers", [])] + [p["layer"] for p in doc.get("proximity", [])]
    for name in dict.fromkeys(wanted):
        if name in ("red_line", "control_units") or name not in catalog.layers or name not in LAYER_STYLE:
            continue
        colour, style, alpha = LAYER_STYLE[name]
        layer = catalog.layers[name]
        drawn = False
        for _, clipped in _in_view(layer.metric, box):
            if alpha:
                _add_poly(ax, clipped, facecolor=colour, edgecolor="none", alpha=alpha, zorder=3)
            _lines(ax, clipped.boundary if clipped.geom_type != "LineString" else clipped, color=colour, lw=1.1,
                   ls=style, zorder=4)
            drawn = True
        if drawn:
            handles.append(Patch(facecolor=colour if alpha else "none", alpha=None, edgecolor=colour, ls=style,
                                 lw=1.1, label=LAYERS[name].title_zh if name in LAYERS else name))
    # Ecological red line.
    red = catalog.layers["red_line"]
    red_in_view = _in_view(red.metric, box)
    if red_in_view:
        _add_poly(ax, [g for _, g in red_in_view], facecolor=RED_LINE, edgecolor="#8b0000", lw=0.7, alpha=0.8,
                  zorder=5)
        handles.append(Patch(facecolor=RED_LINE, edgecolor="#8b0000", alpha=0.8, label="生态保护红线"))
    # Rivers for orientation.
    if "rivers" in catalog.layers:
        for _, clipped in _in_view(catalog.layers["rivers"].metric, box):
            _lines(ax, clipped, color="#2171b5", lw=0.9, zorder=6)
    # The city boundary (jurisdiction).
    territory_edge = shapely.clip_by_rect(catalog.territory.boundary, *box_t)
    if not territory_edge.is_empty:
        _lines(ax, territory_edge, color="black", lw=1.4, ls=(0, (8, 3, 2, 3)), zorder=7)
        handles.append(Line2D([], [], color="black", lw=1.4, ls=(0, (8, 3, 2, 3)), label="市界（管辖范围）"))
    # Unit codes, kept clear of the site.
    span = box_t[2] - box_t[0]
    hgt = box_t[3] - box_t[1]
    keep_clear = shapely.union_all([
        site.buffer(0.08 * span),
        shapely.box(box_t[0] + 0.72 * span, box_t[1] + 0.62 * hgt, box_t[2], box_t[3]),  # the inset
        shapely.box(box_t[0], box_t[1], box_t[0] + 0.35 * span, box_t[1] + 0.16 * hgt),  # the scale bar
        shapely.box(box_t[0], box_t[1] + 0.8 * hgt, box_t[0] + 0.1 * span, box_t[3]),  # the north arrow
    ])
    for row, clipped in _in_view(units.metric, box):
        room = shapely.difference(clipped, keep_clear)
        if room.is_empty or room.area < 0.02 * box.area:
            continue
        p = shapely.get_coordinates(shapely.maximum_inscribed_circle(room, span / 300))[0]
        _label(ax, str(units.records[row]["HJZHGKDYBM"]), p, fontsize=6.2, colour="#333333")
    # The site.
    if site.geom_type == "Point":
        ax.plot([site.x], [site.y], marker="*", ms=15, mfc="#ffd700", mec=SITE, mew=1.4, ls="none", zorder=30)
        handles.append(Line2D([], [], marker="*", ms=10, mfc="#ffd700", mec=SITE, mew=1.2, ls="none",
                              label="项目点位"))
    else:
        outside = shapely.difference(site, catalog.territory)
        if not outside.is_empty and outside.area > 1.0:
            _add_poly(ax, outside, facecolor="none", edgecolor=SITE, hatch="////", lw=0, zorder=28)
            handles.append(Patch(facecolor="none", edgecolor=SITE, hatch="////", label="用地在管辖范围外的部分"))
        _add_poly(ax, site, facecolor=SITE, alpha=0.12, edgecolor="none", zorder=29)
        _add_poly(ax, site, facecolor="none", edgecolor=SITE, lw=2.0, zorder=30)
        handles.append(Patch(facecolor="none", edgecolor=SITE, lw=2.0, label="项目用地范围"))
        parts = _polygons(site)
        labelled = _vertex_labels(parts, min_extent=0.06 * span)
        if labelled:
            for x, y, text in labelled:
                ax.plot([x], [y], marker="o", ms=2.6, color=SITE, zorder=31)
                ax.annotate(text, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=5.5, color=SITE,
                            zorder=32, clip_on=True)
        if len(parts) > 1:
            for i, part in enumerate(parts, 1):
                minx, _, maxx, maxy = part.bounds
                ax.text((minx + maxx) / 2, maxy + 0.025 * span, f"地块{i}", ha="center", va="bottom", fontsize=7,
                        color=SITE, fontproperties=FONT, zorder=33, clip_on=True,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": SITE, "lw": 0.6, "alpha": 0.9})
    ax.set_xlim(box_t[0], box_t[2])
    ax.set_ylim(box_t[1], box_t[3])
    ax.set_aspect("equal")
    _gk_grid(ax)
    _scale_bar(ax, box_t)
    _north_arrow(ax)
    _inset(ax, catalog, site, box_t, colours)
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=4, prop=_font(6.5),
               frameon=False, handlelength=2.2, columnspacing=1.2)
    return _png(fig, dpi)


def _font(size: float) -> font_manager.FontProperties:
    fp = FONT.copy()
    fp.set_size(size)
    return fp


def _vertex_labels(parts: list, *, min_extent: float) -> list[tuple[float, float, str]]:
    """Boundary-point labels (J1…, numbered per part as in the table) when there are few enough to read."""
    out = []
    for part in parts:
        minx, miny, maxx, maxy = part.bounds
        if max(maxx - minx, maxy - miny) < min_extent:
            return []
        n = 0
        for ring in (part.exterior, *part.interiors):
            for x, y in np.asarray(ring.coords)[:-1]:
                n += 1
                out.append((float(x), float(y), f"J{n}"))
    return out if len(out) <= 40 else []


_OVERVIEW: dict[str, tuple] = {}


def _overview(catalog: Catalog) -> tuple[list, MplPath | None, Any]:
    """Simplified unit paths, one red-line path and the territory edge for the inset (cached per dataset)."""
    key = catalog.content_hash
    if key not in _OVERVIEW:
        if len(_OVERVIEW) > 4:
            _OVERVIEW.clear()
        units = [_path(g.simplify(60)) for g in catalog.units.metric]
        red = _path([g.simplify(60) for g in catalog.layers["red_line"].metric])
        _OVERVIEW[key] = (units, red, catalog.territory.simplify(60).boundary)
    return _OVERVIEW[key]


def _inset(ax, catalog: Catalog, site, box_t, colours: list[str]) -> None:
    inset = ax.inset_axes((0.735, 0.64, 0.255, 0.35), zorder=40)
    inset.set_facecolor("white")
    unit_paths, red_path, edge = _overview(catalog)
    for row, path in enumerate(unit_paths):
        if path is not None:
            inset.add_artist(PathPatch(path, facecolor=colours[row], edgecolor="#8a8a8a", lw=0.3, zorder=1))
    if red_path is not None:
        inset.add_artist(PathPatch(red_path, facecolor=RED_LINE, edgecolor="none", alpha=0.8, zorder=2))
    _lines(inset, edge, color="black", lw=0.7, zorder=3)
    minx, miny, maxx, maxy = catalog.territory.bounds
    sminx, sminy, smaxx, smaxy = site.bounds
    minx, miny, maxx, maxy = min(minx, sminx), min(miny, sminy), max(maxx, smaxx), max(maxy, smaxy)
    pad = 0.04 * max(maxx - minx, maxy - miny)
    inset.set_xlim(minx - pad, maxx + pad)
    inset.set_ylim(miny - pad, maxy + pad)
    inset.set_aspect("equal", adjustable="box", anchor="NE")
    frame = box_t
    inset.add_patch(Rectangle((frame[0], frame[1]), frame[2] - frame[0], frame[3] - frame[1], facecolor="none",
                              edgecolor=SITE, lw=1.2, zorder=5))
    c = site.centroid
    inset.plot([c.x], [c.y], marker="o", ms=4, mfc="#ffd700", mec=SITE, mew=1.0, zorder=6)
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_linewidth(0.8)
    inset.text(0.03, 0.97, "满洲里市全域（方框为主图范围）", transform=inset.transAxes, ha="left", va="top",
               fontproperties=FONT, fontsize=5.5, zorder=7,
               bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})


def land_cover_png(doc: dict[str, Any], catalog: Catalog, *, dpi: int = 200) -> bytes:
    """The land-cover raster around the site (the same extent as the site map), with the site outlined."""
    site = site_metric(doc)
    box_t = view_box(site)
    lc = catalog.land_cover
    px = lc.pixel_m
    rows, cols = lc.grid.shape
    x0, y0 = lc.transform.c, lc.transform.f
    c0, c1 = max(int(np.floor((box_t[0] - x0) / px)), 0), min(int(np.ceil((box_t[2] - x0) / px)), cols)
    r0, r1 = max(int(np.floor((y0 - box_t[3]) / px)), 0), min(int(np.ceil((y0 - box_t[1]) / px)), rows)
    fig = Figure(figsize=(6.9, 3.0))
    ax = fig.add_axes((0.02, 0.03, 0.66, 0.94))
    ax.set_facecolor("#ffffff")
    codes = sorted(LAND_COVER_CLASSES)
    present: list[int] = []
    if r1 > r0 and c1 > c0:
        window = lc.grid[r0:r1, c0:c1]
        present = [c for c in codes if (window == c).any()]
        cmap = ListedColormap(["#ffffff"] + [LAND_COVER_CLASSES[c][2] for c in codes])
        ax.imshow(np.ma.masked_equal(window, LAND_COVER_NODATA), cmap=cmap, vmin=0, vmax=len(codes),
                  interpolation="nearest", extent=(x0 + c0 * px, x0 + c1 * px, y0 - r1 * px, y0 - r0 * px),
                  zorder=1)
    if site.geom_type == "Point":
        ax.plot([site.x], [site.y], marker="*", ms=13, mfc="#ffd700", mec="black", mew=1.2, ls="none", zorder=5)
    else:
        _add_poly(ax, site, facecolor="none", edgecolor="black", lw=1.8, zorder=5)
    territory_edge = shapely.clip_by_rect(catalog.territory.boundary, *box_t)
    if not territory_edge.is_empty:
        _lines(ax, territory_edge, color="black", lw=1.0, ls=(0, (8, 3, 2, 3)), zorder=4)
    ax.set_xlim(box_t[0], box_t[2])
    ax.set_ylim(box_t[1], box_t[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    handles = [Patch(facecolor=LAND_COVER_CLASSES[c][2], edgecolor="#666666", lw=0.4, label=LAND_COVER_CLASSES[c][1])
               for c in present]
    handles.append(Patch(facecolor="none", edgecolor="black", lw=1.6,
                         label="项目点位" if site.geom_type == "Point" else "项目用地范围"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.70, 0.5), prop=_font(7), frameon=False,
               title=f"土地覆被（{px:g} m 栅格）", title_fontproperties=_font(7.5))
    _scale_bar(ax, box_t)
    return _png(fig, dpi)
