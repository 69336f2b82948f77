"""The in-memory catalog of one dataset version: every layer with its spatial index, land cover and rule base.

Built once (at start-up, or when a version is published) and then only read, so concurrent requests share it
without locks. Loading checks the dataset against its contract and its recorded content hashes and refuses data
that does not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from app.domain.rules import RuleBase, check_against_dataset, load_rule_base
from app.domain.schema import (
    DATASET_TABLE,
    LAYERS,
    METRIC_EPSG,
    PROVENANCE_TABLE,
    STORAGE_EPSG,
    UNIT_TYPES,
    LayerSpec,
)
from app.domain.locator import PointLocator
from app.domain.spatial import LayerIndex
from app.errors import DataError
from app.geo.raster import LandCover
from app.geo.vector_io import content_hash, list_layers, read_layer, read_table

GPKG_NAME = "manzhouli.gpkg"


@dataclass
class Layer:
    """One loaded layer: attributes per row, geometry in both CRSs, and its spatial index."""

    name: str
    spec: LayerSpec
    records: list[dict[str, Any]]
    geoms: np.ndarray  # storage CRS (EPSG:4490)
    metric: np.ndarray  # EPSG:4548
    index: LayerIndex
    content_hash: str


@dataclass
class Catalog:
    """Everything a query needs, for one dataset version."""

    dataset_id: str
    content_hash: str
    info: dict[str, str]
    provenance: dict[str, dict[str, str]]
    layers: dict[str, Layer]
    territory: Any  # metric
    land_cover: LandCover
    rules: RuleBase
    unit_row: dict[str, int] = field(default_factory=dict)
    version: str = ""  # the store's version id ("v3"); empty for a folder loaded outside the store
    locator: PointLocator | None = None  # per-cell point answers; built by load_catalog

    @property
    def dataset_version(self) -> str:
        """What answers name as their data version: the store's version id, else the dataset's own id."""
        return self.version or self.dataset_id

    @property
    def illustrative(self) -> bool:
        return self.info.get("illustrative", "false") == "true"

    @property
    def units(self) -> Layer:
        return self.layers["control_units"]

    def unit_type(self, row: int) -> str:
        return UNIT_TYPES[self.units.records[row]["ZHGKDYFL"]]


def dataset_hash(layer_hashes: dict[str, str]) -> str:
    """The content hash of a whole dataset from the hashes of its layers and land cover."""
    return hashlib.sha256(json.dumps(layer_hashes, sort_keys=True).encode()).hexdigest()


def land_cover_hash(land_cover: LandCover) -> str:
    return hashlib.sha256(land_cover.grid.tobytes() + repr(tuple(land_cover.transform)).encode()).hexdigest()


def load_catalog(dataset_dir: Path, zones_dir: Path, *, verify: bool = True, version: str = "",
                 rules: RuleBase | None = None) -> Catalog:
    """Load a dataset folder and a rule base, check both, and build every index."""
    gpkg = dataset_dir / GPKG_NAME
    if not gpkg.is_file():
        raise DataError("找不到数据集文件", detail=f"{gpkg} does not exist")
    present = set(list_layers(gpkg))
    missing = [name for name, spec in LAYERS.items() if spec.required and name not in present]
    if missing or DATASET_TABLE not in present:
        raise DataError(f"数据集缺少图层：{', '.join(missing or [DATASET_TABLE])}", detail=f"{gpkg}: missing {missing}")
    info = {str(k): str(v) for k, v in read_table(gpkg, DATASET_TABLE)[["key", "value"]].values}
    provenance: dict[str, dict[str, str]] = {}
    if PROVENANCE_TABLE in present:
        for row in read_table(gpkg, PROVENANCE_TABLE).to_dict("records"):
            provenance[str(row["layer"])] = {k: str(v) for k, v in row.items()}
    layers: dict[str, Layer] = {}
    hashes: dict[str, str] = {}
    for name, spec in LAYERS.items():
        if name not in present:
            continue
        frame = read_layer(gpkg, name)
        layers[name] = _load_layer(name, spec, frame, gpkg)
        hashes[name] = layers[name].content_hash
        recorded = provenance.get(name, {}).get("content_hash")
        if verify and recorded and recorded != hashes[name]:
            raise DataError(f"数据集图层 {name} 校验失败，数据可能已损坏，拒绝加载",
                            detail=f"{gpkg}: layer {name} hash {hashes[name]} != recorded {recorded}")
    land_cover = LandCover.open(dataset_dir / info.get("land_cover_file", "landcover.tif"))
    lc_hash = land_cover_hash(land_cover)
    recorded = provenance.get("land_cover", {}).get("content_hash")
    if verify and recorded and recorded != lc_hash:
        raise DataError("土地覆被栅格校验失败，数据可能已损坏，拒绝加载", detail=f"land cover hash {lc_hash} != {recorded}")
    hashes["land_cover"] = lc_hash
    units = layers["control_units"]
    codes = [r["HJZHGKDYBM"] for r in units.records]
    if len(set(codes)) != len(codes):
        raise DataError("环境管控单元编码重复", detail=f"duplicate unit codes in {gpkg}")
    rules = rules or load_rule_base(zones_dir)
    check_against_dataset(rules, set(codes))
    territory = shapely.union_all(layers["admin_boundary"].metric)
    shapely.prepare(territory)
    return Catalog(
        dataset_id=info.get("dataset_id", gpkg.stem),
        content_hash=dataset_hash(hashes),
        info=info,
        provenance=provenance,
        layers=layers,
        territory=territory,
        land_cover=land_cover,
        rules=rules,
        unit_row={code: i for i, code in enumerate(codes)},
        version=version,
        locator=PointLocator(units.index, layers["red_line"].index),
    )


def _load_layer(name: str, spec: LayerSpec, frame: gpd.GeoDataFrame, gpkg: Path) -> Layer:
    if frame.crs is None or frame.crs.to_epsg() != STORAGE_EPSG:
        raise DataError(f"图层 {name} 的坐标系应为 CGCS2000（EPSG:{STORAGE_EPSG}）",
                        detail=f"{gpkg}: {name} CRS {frame.crs}")
    absent = [f for f in spec.fields if f not in frame.columns]
    if absent:
        raise DataError(f"图层 {name} 缺少字段：{', '.join(absent)}", detail=f"{gpkg}: {name} lacks {absent}")
    geoms = frame.geometry.values
    if len(geoms) and (shapely.is_empty(geoms).any() or not shapely.is_valid(geoms).all()):
        raise DataError(f"图层 {name} 含有无效或空几何", detail=f"{gpkg}: {name} has invalid or empty geometry")
    digest = content_hash(frame)
    metric = np.asarray(frame.to_crs(METRIC_EPSG).geometry.values, dtype=object)
    records = [{k: _plain(v) for k, v in row.items()} for row in frame[list(spec.fields)].to_dict("records")]
    return Layer(
        name=name, spec=spec, records=records, geoms=np.asarray(geoms, dtype=object), metric=metric,
        index=LayerIndex(metric, polygonal=spec.geometry == "polygon"), content_hash=digest,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10]
    return value
