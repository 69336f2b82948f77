"""Vector dataset I/O: read and write the layers of a zoning GeoPackage, and hash their content.

The one place that touches pyogrio for dataset files. Content hashes are computed from what a layer holds
(attributes and WKB geometry in row order), not from file bytes, so the same content written twice hashes the
same even if the container differs.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

# GeoPackage files record a last-change timestamp; fixing it keeps rebuilt files byte-identical.
_FIXED_GPKG_DATE = "2026-01-01T00:00:00Z"


def list_layers(path: Path) -> list[str]:
    """Names of the layers and attribute tables in a GeoPackage."""
    return [str(name) for name, _ in pyogrio.list_layers(path)]


def read_layer(path: Path, layer: str) -> gpd.GeoDataFrame:
    """Read one spatial layer as a GeoDataFrame (CRS from the file)."""
    return pyogrio.read_dataframe(path, layer=layer)


def read_table(path: Path, layer: str) -> pd.DataFrame:
    """Read one non-spatial attribute table."""
    return pyogrio.read_dataframe(path, layer=layer, read_geometry=False)


def write_layer(
    path: Path,
    gdf: gpd.GeoDataFrame,
    layer: str,
    *,
    title: str = "",
    description: str = "",
) -> None:
    """Append one spatial layer to a GeoPackage, with a title and description in its GPKG metadata."""
    options = {"IDENTIFIER": title or layer, "DESCRIPTION": description, "SPATIAL_INDEX": "YES"}
    with pyogrio_config({"OGR_CURRENT_DATE": _FIXED_GPKG_DATE}):
        pyogrio.write_dataframe(gdf, path, layer=layer, driver="GPKG", append=path.exists(), layer_options=options)


def write_table(path: Path, df: pd.DataFrame, layer: str, *, description: str = "") -> None:
    """Append one non-spatial attribute table to a GeoPackage."""
    options = {"DESCRIPTION": description}
    with pyogrio_config({"OGR_CURRENT_DATE": _FIXED_GPKG_DATE}):
        pyogrio.write_dataframe(df, path, layer=layer, driver="GPKG", append=path.exists(), layer_options=options)


class pyogrio_config:
    """Set GDAL config options for the duration of a block and restore the previous values."""

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options
        self.previous: dict[str, Any] = {}

    def __enter__(self) -> None:
        self.previous = {key: pyogrio.get_gdal_config_option(key) for key in self.options}
        pyogrio.set_gdal_config_options(self.options)

    def __exit__(self, *exc: object) -> None:
        pyogrio.set_gdal_config_options(self.previous)


def _canonical_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) else repr(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return str(value) if not isinstance(value, (int, bool, str)) else value


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a layer's content: column names, every attribute value and the WKB of every geometry, in order."""
    digest = hashlib.sha256()
    columns = sorted(c for c in frame.columns if c != "geometry")
    digest.update(json.dumps(columns, ensure_ascii=False).encode())
    has_geometry = isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame.columns
    wkb = shapely.to_wkb(frame.geometry.values, hex=False, byte_order=1) if has_geometry else None
    records = frame[columns].itertuples(index=False, name=None)
    for i, row in enumerate(records):
        digest.update(json.dumps([_canonical_value(v) for v in row], ensure_ascii=False).encode())
        if wkb is not None:
            digest.update(wkb[i] if wkb[i] is not None else b"\x00")
    return digest.hexdigest()
