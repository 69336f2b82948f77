"""Batch screening from the command line, on the local version store (like scripts.zoning).

    python -m scripts.batch sites.csv --out results.csv [--format csv|ndjson|geojson] [--crs EPSG:4527]
    python -m scripts.batch parcels.gpkg --out results.geojson
    python -m scripts.batch sites.json --out results.ndjson --as-of v1

Input: CSV (lon/lat or x/y columns, or a WKT column; optional id and project columns named like the Project
fields), JSON (`{"sites": [...]}`), or a GIS file of sites with project attributes (GeoPackage, zipped Shapefile,
GeoJSON, KML). The output format follows --format, else the extension of --out (.csv, .ndjson/.jsonl,
.geojson/.json). A progress bar goes to stderr; the result is written to a temporary file and renamed into place
when complete. Exit status: 0 done (rows that could not be read are listed in the result), 2 the input was refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from app.domain import batch as engine
from app.domain.datasets import DatasetService
from app.domain.versions import VersionStore
from app.errors import ZoningError
from app.settings import Settings

_EXT_FORMAT = {".csv": "csv", ".txt": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".geojson": "geojson",
               ".json": "geojson"}
_INPUT_KIND = {".csv": "csv", ".txt": "csv", ".json": "json", ".gpkg": "file", ".zip": "file", ".geojson": "file",
               ".kml": "file"}


class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal, a line per step otherwise)."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.start = time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def note(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {text}", file=self.stream, flush=True)

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        filled = int(round(share * self.width))
        elapsed = time.monotonic() - self.start
        line = f"筛查 [{'#' * filled}{'-' * (self.width - filled)}] {done:,}/{total:,} ({share:.0%}) {elapsed:.1f} s"
        if self.tty:
            end = "\n" if done >= total else ""
            print("\r" + line, end=end, file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)


def _catalog(settings: Settings, as_of: str | None, bar: ProgressBar):
    bar.note("打开数据版本库")
    service = DatasetService(VersionStore(settings.data.versions_dir), settings.data.zones_dir)
    bar.note("加载当前版本")
    service.start(settings.data.dataset_dir)
    return service.catalog_for(as_of) if as_of else service.current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.batch", description="满洲里生态环境分区管控批量筛查")
    parser.add_argument("input", type=Path, help="sites: .csv, .json, .gpkg, .zip (Shapefile), .geojson, .kml")
    parser.add_argument("--out", type=Path, required=True, help="result file")
    parser.add_argument("--format", choices=engine.OUTPUT_FORMATS, help="csv, ndjson or geojson (default: from --out)")
    parser.add_argument("--crs", help="CRS of the coordinates (default EPSG:4490; files carry their own)")
    parser.add_argument("--axis-order", choices=("xy", "survey"), help="survey: X = northing, Y = easting")
    parser.add_argument("--extra-columns", choices=("refuse", "ignore"), default="refuse",
                        help="columns that are neither coordinates, id nor project fields")
    parser.add_argument("--as-of", help="screen against an earlier published version, e.g. v1")
    parser.add_argument("--block", type=int, default=10_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    bar = ProgressBar()
    fmt = args.format or _EXT_FORMAT.get(args.out.suffix.lower(), "csv")
    try:
        settings = Settings()
        bar.note(f"读取 {args.input.name}")
        try:
            data = args.input.read_bytes()
        except OSError as exc:
            print(f"错误：无法读取 {args.input}：{exc.strerror}", file=sys.stderr)
            return 2
        kind = _INPUT_KIND.get(args.input.suffix.lower(), "auto")
        batch = engine.read_sites(data, kind=kind, filename=args.input.name, crs=args.crs,
                                  axis_order=args.axis_order, extra_columns=args.extra_columns,
                                  max_sites=engine.MAX_SITES, max_vertices=settings.limits.max_vertices)
        catalog = _catalog(settings, args.as_of, bar)
    except ZoningError as exc:
        print(f"错误：{exc.message_zh}", file=sys.stderr)
        return 2
    for warning in batch.warnings:
        bar.note(f"注意：{warning}")
    bar.note(f"{len(batch):,} 个场址，数据版本 {catalog.dataset_version}，规则版本 {catalog.rules.version[:12]}")
    verdicts: Counter = Counter()

    def count(results):
        for block in results:
            verdicts.update(v if v is not None else "error" for v in block.verdict)
            yield block

    started = time.monotonic()
    meta = engine.provenance(catalog, len(batch), generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out_dir = args.out.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            blocks = count(engine.screen_blocks(batch, catalog, block=max(args.block, 1), progress=bar))
            for chunk in engine.render(blocks, fmt, meta):
                out.write(chunk)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, args.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    elapsed = time.monotonic() - started
    summary = "，".join(f"{k} {n:,}" for k, n in sorted(verdicts.items()))
    bar.note(f"完成：{summary}；用时 {elapsed:.1f} s（{len(batch) / max(elapsed, 1e-9):,.0f} 个/秒）")
    print(f"结果已写入 {args.out}（{fmt}）", file=sys.stderr)
    return 0


if __name__ == "__main__":  # needed: GIS files are read in a forkserver child that re-imports __main__ otherwise
    sys.exit(main())
