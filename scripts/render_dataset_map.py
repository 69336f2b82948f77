"""Render a picture of a zoning dataset (units, red line, element layers, land cover) to a PNG for the docs.

    python -m scripts.render_dataset_map                  # geodata/ → docs/img/reference-data.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from app.domain.schema import LAND_COVER_CLASSES, METRIC_EPSG, PROVENANCE_ILLUSTRATIVE_ZH  # noqa: E402
from app.geo.vector_io import read_layer, read_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FONT = ROOT / "app" / "web" / "static" / "fonts" / "wqy-microhei.ttf"


def use_cjk_font() -> None:
    """Register the vendored CJK font with matplotlib and make it the default."""
    font_manager.fontManager.addfont(str(FONT))
    plt.rcParams["font.family"] = font_manager.FontProperties(fname=str(FONT)).get_name()
    plt.rcParams["axes.unicode_minus"] = False


def render(gpkg: Path, tif: Path, out: Path) -> None:
    """Draw the dataset: left, units and element layers; right, the land-cover raster."""
    use_cjk_font()
    layers = {name: read_layer(gpkg, name).to_crs(METRIC_EPSG) for name in (
        "control_units", "red_line", "nature_reserve", "wetland_parks", "drinking_water", "mining_areas",
        "urban_boundary", "no_burn_zone", "basic_farmland", "rivers", "lakes", "water_env_zones")}
    info = dict(read_table(gpkg, "dataset_info")[["key", "value"]].values)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(20, 9.6), dpi=110)
    units = layers["control_units"]
    colors = {"1": ["#c7e9c0", "#a1d99b", "#74c476", "#d9f0d3", "#b8e3b0"],
              "2": ["#fdd0a2", "#fdae6b", "#fd8d3c", "#fee6ce", "#f4b183", "#fdbe85", "#e6a06b", "#fcc38f",
                    "#f7a35c", "#fddbb5"]}
    counters = {"1": 0, "2": 0}
    for _, row in units.iterrows():
        kind = row.ZHGKDYFL
        color = colors[kind][counters[kind] % len(colors[kind])]
        counters[kind] += 1
        units[units.HJZHGKDYBM == row.HJZHGKDYBM].plot(ax=ax, color=color, edgecolor="#555555", linewidth=0.6)
    layers["basic_farmland"].plot(ax=ax, color="#f2d36b", edgecolor="none", alpha=0.9)
    layers["mining_areas"].plot(ax=ax, color="#7b5a45", edgecolor="none", alpha=0.75)
    layers["nature_reserve"][layers["nature_reserve"].zone == "general_control"].plot(
        ax=ax, facecolor="none", edgecolor="#1b7837", linewidth=1.2, linestyle="--")
    layers["wetland_parks"].plot(ax=ax, facecolor="none", edgecolor="#2166ac", linewidth=1.0, hatch="////", alpha=0.6)
    layers["red_line"].plot(ax=ax, color="#d7301f", edgecolor="#99000d", linewidth=0.2, alpha=0.85)
    dw = layers["drinking_water"]
    for zone, color in (("quasi", "#c6dbef"), ("level2", "#6baed6"), ("level1", "#08306b")):
        dw[dw.zone == zone].plot(ax=ax, color=color, edgecolor="#08519c", linewidth=0.4)
    layers["no_burn_zone"].boundary.plot(ax=ax, color="#636363", linewidth=0.8, linestyle=":")
    layers["urban_boundary"].boundary.plot(ax=ax, color="#6a3d9a", linewidth=1.0)
    layers["lakes"].plot(ax=ax, color="#3a7bd5", edgecolor="none")
    layers["rivers"].plot(ax=ax, color="#2171b5", linewidth=1.1)
    for _, row in units.iterrows():
        point = row.geometry.representative_point()
        ax.annotate(row.HJZHGKDYBM[-5:], (point.x, point.y), fontsize=7.5, ha="center", color="#222222",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    legend = [
        Patch(color="#a1d99b", label="优先保护单元（5个）"), Patch(color="#fdae6b", label="重点管控单元（10个）"),
        Patch(color="#d7301f", label=f"生态保护红线（{len(layers['red_line'])}个图斑）"),
        Patch(facecolor="none", edgecolor="#1b7837", linestyle="--", label="二卡湿地自然保护区"),
        Patch(facecolor="none", edgecolor="#2166ac", hatch="////", label="国家湿地公园"),
        Patch(color="#6baed6", label="饮用水水源保护区（一级/二级/准）"), Patch(color="#7b5a45", label="露天采场、排土场、沉陷区"),
        Patch(color="#f2d36b", label="永久基本农田"), Patch(facecolor="none", edgecolor="#6a3d9a", label="城镇开发边界"),
        Patch(facecolor="none", edgecolor="#636363", linestyle=":", label="高污染燃料禁燃区"),
    ]
    ax.legend(handles=legend, loc="lower left", fontsize=8.5, framealpha=0.9)
    ax.set_title("环境管控单元与生态保护红线（单元编码后五位）", fontsize=13)
    with rasterio.open(tif) as src:
        grid = src.read(1)
        b = src.bounds
    codes = sorted(LAND_COVER_CLASSES)
    cmap = ListedColormap(["#ffffff"] + [LAND_COVER_CLASSES[c][2] for c in codes])
    ax2.imshow(np.ma.masked_equal(grid, 0), cmap=cmap, vmin=0, vmax=len(codes), interpolation="nearest",
               extent=(b.left, b.right, b.bottom, b.top))
    ax2.legend(handles=[Patch(color=LAND_COVER_CLASSES[c][2], label=LAND_COVER_CLASSES[c][1]) for c in codes],
               loc="lower left", fontsize=9, framealpha=0.9)
    ax2.set_title("土地覆被（30 m）", fontsize=13)
    for a in (ax, ax2):
        a.set_xlim(b.left, b.right)
        a.set_ylim(b.bottom, b.top)
        a.set_aspect("equal")
        a.ticklabel_format(style="plain")
        a.tick_params(labelsize=7)
        a.set_xlabel("东坐标 / m（CGCS2000 高斯-克吕格 中央经线117°E）", fontsize=8)
    fig.suptitle(f"满洲里市生态环境分区管控参考数据 {info.get('dataset_id', '')} —— {PROVENANCE_ILLUSTRATIVE_ZH}",
                 fontsize=14)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "geodata")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "reference-data.png")
    args = parser.parse_args(argv)
    render(args.data / "manzhouli.gpkg", args.data / "landcover.tif", args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
