"""Land-cover raster: read once into memory, then the class composition of any site in the metric CRS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.features import geometry_mask

from app.domain.schema import LAND_COVER_CLASSES, LAND_COVER_NODATA, METRIC_EPSG
from app.errors import DataError


@dataclass
class LandCover:
    """The whole land-cover grid (uint8 class codes) with its affine transform, in EPSG:4548."""

    grid: np.ndarray
    transform: rasterio.Affine
    pixel_m: float
    path: Path

    @classmethod
    def open(cls, path: Path) -> "LandCover":
        """Read the raster; refuse one that is not a single-band uint8 grid in the metric CRS."""
        try:
            with rasterio.open(path) as src:
                if src.crs is None or src.crs.to_epsg() != METRIC_EPSG:
                    raise DataError("土地覆被栅格坐标系不正确", detail=f"{path}: CRS {src.crs}, expected EPSG:{METRIC_EPSG}")
                if src.count != 1 or src.dtypes[0] != "uint8":
                    raise DataError("土地覆被栅格格式不正确", detail=f"{path}: {src.count} bands of {src.dtypes}")
                return cls(src.read(1), src.transform, abs(src.transform.a), path)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError("无法读取土地覆被栅格", detail=f"{path}: {exc}") from exc

    def class_at(self, x: float, y: float) -> int:
        """Class code of the pixel holding (x, y); nodata outside the grid."""
        c = int(np.floor((x - self.transform.c) / self.pixel_m))
        r = int(np.floor((self.transform.f - y) / self.pixel_m))
        if 0 <= r < self.grid.shape[0] and 0 <= c < self.grid.shape[1]:
            return int(self.grid[r, c])
        return LAND_COVER_NODATA

    def composition(self, site) -> dict[str, float]:
        """Share of the site in each land-cover class (shares of classified pixels, summing to 1).

        A polygon counts the pixels whose centres fall inside it; a site smaller than one pixel, or a point,
        takes the class under its representative point.
        """
        if site.geom_type in ("Polygon", "MultiPolygon"):
            minx, miny, maxx, maxy = site.bounds
            x0, y0, px = self.transform.c, self.transform.f, self.pixel_m
            rows, cols = self.grid.shape
            c0, c1 = max(int(np.floor((minx - x0) / px)), 0), min(int(np.ceil((maxx - x0) / px)), cols)
            r0, r1 = max(int(np.floor((y0 - maxy) / px)), 0), min(int(np.ceil((y0 - miny) / px)), rows)
            if r1 > r0 and c1 > c0:
                transform = rasterio.Affine(px, 0.0, x0 + c0 * px, 0.0, -px, y0 - r0 * px)
                inside = geometry_mask([site], out_shape=(r1 - r0, c1 - c0), transform=transform, invert=True)
                values = self.grid[r0:r1, c0:c1][inside]
                values = values[values != LAND_COVER_NODATA]
                if values.size:
                    counts = np.bincount(values, minlength=max(LAND_COVER_CLASSES) + 1)
                    return {LAND_COVER_CLASSES[c][0]: float(counts[c] / values.size) for c in sorted(LAND_COVER_CLASSES)
                            if counts[c]}
        point = shapely.get_coordinates(site.representative_point())[0]
        code = self.class_at(point[0], point[1])
        return {LAND_COVER_CLASSES[code][0]: 1.0} if code in LAND_COVER_CLASSES else {}
