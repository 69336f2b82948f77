"""Benchmark of batch point screening (`app.domain.batch.screen`): points per second on one core, with a baseline.

A benchmark, not a test: it prints one Markdown table of

- `screen()` of N random points inside the territory, from lon/lat arrays to full answers (verdict, units, red-line
  inside and distance, clause ids, missing facts): median of several repetitions after the point grid is built,
  with the compiled red-line distance kernel (when numba is installed) and with the numpy one;
- the same without the red-line distance (the distance index stubbed out), to show what the distance costs;
- the point grid's build time (once per dataset version) and the memory of its arrays;
- the single-site `assess()` loop on the same points, as the baseline;
- end to end: a CSV of lon/lat rows in (decode, parse, validate, transform) → CSV bytes out (`sites_from_csv` +
  `write_results`).

    python -m scripts.bench_batch [--points 1000000] [--seed 2026] [--repeat 3]

or, from another benchmark: `scripts.bench_batch.run(catalog, n=..., seed=..., out=print)`, which returns the
figures as a dict. Everything runs in this process on one core (numpy, shapely, pyproj and the numba kernel are
single-threaded). Absolute figures drift between runs and machines; compare the rows printed by the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"industry_code": "3011", "construction_type": "new"}
CSV_MAX_POINTS = 200_000  # the end-to-end CSV figure uses at most this many rows (a 1M-row answer is ~500 MB)


def random_points(catalog: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform over the territory (CGCS2000 lon/lat), drawn over its bounding box and kept inside."""
    from app.geo.crs import from_metric  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = catalog.territory.bounds
    xs, ys, got = [], [], 0
    while got < n:
        x, y = rng.uniform(minx, maxx, 2 * n), rng.uniform(miny, maxy, 2 * n)
        keep = shapely.intersects_xy(catalog.territory, x, y)
        xs.append(x[keep])
        ys.append(y[keep])
        got += int(keep.sum())
    return from_metric(np.concatenate(xs)[:n], np.concatenate(ys)[:n])


def point_batch(lon: np.ndarray, lat: np.ndarray, project: dict[str, Any] = PROJECT) -> Any:
    """A SiteBatch of points with one project, built directly from the arrays (what a reader would produce)."""
    from app.domain import batch as engine  # noqa: PLC0415

    n = lon.size
    collector = engine.SiteCollector()
    pid = collector.projects.add_raw(project)
    return engine.SiteBatch(ids=[str(i) for i in range(n)], kind=np.full(n, engine.KIND_POINT, np.int8), lon=lon,
                            lat=lat, geoms=np.full(n, None, object), project_idx=np.full(n, pid, np.int32),
                            projects=collector.projects.items, errors=[None] * n)


def _timed(call: Callable[[], Any], repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        runs.append(time.perf_counter() - t0)
    return runs


@contextlib.contextmanager
def _compiled(on: bool) -> Iterator[None]:
    from app.domain import batch as engine  # noqa: PLC0415

    saved = engine.COMPILED_DISTANCE
    engine.COMPILED_DISTANCE = on
    try:
        yield
    finally:
        engine.COMPILED_DISTANCE = saved


@contextlib.contextmanager
def _no_distance() -> Iterator[None]:
    """The red-line distance index answering 0 at once (for the "without distance" row only)."""
    from app.domain import batch as engine  # noqa: PLC0415

    saved = engine._RunIndex.distance
    engine._RunIndex.distance = lambda self, x, y, cells=None, compiled=None: np.zeros(np.size(x))
    try:
        yield
    finally:
        engine._RunIndex.distance = saved


class _Sink:
    """A binary file that only counts what is written."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def run(catalog: Any, *, n: int = 1_000_000, seed: int = 2026, repeat: int = 3, assess_seconds: float = 2.0,
        fresh_grid: bool = True, out: Callable[[str], Any] = print) -> dict[str, Any]:
    """Measure batch point screening on `n` random points of the territory; print a Markdown table with `out` and
    return the figures (rates in points per second, times in seconds, memory in MB). The grid build is timed on
    a fresh preparation when the catalog's grid exists already, unless `fresh_grid` is false."""
    from app.domain import batch as engine  # noqa: PLC0415
    from app.domain.assessment import assess  # noqa: PLC0415

    repeat = max(repeat, 3)
    lon, lat = random_points(catalog, n, seed)
    batch = point_batch(lon, lat)
    figures: dict[str, Any] = {"points": n, "seed": seed, "repeat": repeat}

    # The compiled kernel (numba import and compilation, or loading it from numba's cache), then the point grid,
    # built once per dataset version (the first batch of >= GRID_MIN_POINTS points builds it).
    t0 = time.perf_counter()
    kernel = engine._nearest_kernel() is not None
    figures["compiled_kernel"] = kernel
    figures["kernel_load_s"] = time.perf_counter() - t0
    prep = engine.prepared(catalog)
    built = prep.has_grid and not fresh_grid
    t0 = time.perf_counter()
    if prep.has_grid and fresh_grid:  # built already (e.g. by an earlier benchmark): time a fresh copy
        grid = engine._Prepared(catalog).grid(catalog)
    else:
        grid = prep.grid(catalog)
    figures["grid_build_s"] = None if built else time.perf_counter() - t0
    figures["grid_mb"] = grid.nbytes / 1e6
    figures["grid_leaves"] = grid.leaves
    del grid

    def screen() -> None:
        result = engine.screen(batch, catalog)
        assert len(result) == n

    screen()  # warm-up (builds the grid of `prepared(catalog)` if needed, compiles the kernel)
    if kernel:
        runs = _timed(screen, repeat)
        figures["screen_compiled_s"] = statistics.median(runs)
    with _compiled(False):
        screen()
        runs = _timed(screen, repeat)
        figures["screen_numpy_s"] = statistics.median(runs)
    with _no_distance():
        runs = _timed(screen, repeat)
        figures["screen_no_distance_s"] = statistics.median(runs)

    # Baseline: the single-site assess() in a loop (full document), for as long as `assess_seconds`.
    k, t0 = 0, time.perf_counter()
    while k < n and (time.perf_counter() - t0 < assess_seconds or k < 20):
        assess(shapely.Point(float(lon[k]), float(lat[k])), PROJECT, catalog)
        k += 1
    figures["assess_rate"] = k / (time.perf_counter() - t0)

    # End to end: CSV text in -> CSV bytes out.
    m = min(n, CSV_MAX_POINTS)
    text = "id,lon,lat,industry_code,construction_type\n" + "".join(
        f"S{i},{a!r},{b!r},3011,new\n" for i, (a, b) in enumerate(zip(lon[:m].tolist(), lat[:m].tolist())))
    data = text.encode()
    t0 = time.perf_counter()
    read = engine.sites_from_csv(data)
    t_read = time.perf_counter() - t0
    sink = _Sink()
    engine.write_results(read, catalog, "csv", sink)
    figures["csv_points"] = m
    figures["csv_read_s"] = t_read
    figures["csv_total_s"] = time.perf_counter() - t0
    figures["csv_out_mb"] = sink.bytes / 1e6

    best = figures.get("screen_compiled_s", figures["screen_numpy_s"])
    figures["screen_rate"] = n / best
    figures["screen_numpy_rate"] = n / figures["screen_numpy_s"]
    figures["screen_no_distance_rate"] = n / figures["screen_no_distance_s"]
    figures["csv_rate"] = m / figures["csv_total_s"]
    base = figures["assess_rate"]

    def rate(value: float) -> str:
        return f"{value:,.0f} points/s"

    def times(value: float) -> str:
        return f"{value / base:,.0f}×"

    rows: list[tuple[str, str, str]] = []
    if kernel:
        rows.append((f"`screen()`, {n:,} points, lon/lat arrays → full answers (compiled distance kernel)",
                     rate(figures["screen_rate"]), times(figures["screen_rate"])))
    rows.append((f"`screen()`, {n:,} points, numpy distance" + ("" if kernel else " (numba not installed)"),
                 rate(figures["screen_numpy_rate"]), times(figures["screen_numpy_rate"])))
    rows.append(("`screen()` without the red-line distance (index stubbed out)",
                 rate(figures["screen_no_distance_rate"]), times(figures["screen_no_distance_rate"])))
    rows.append((f"end to end: {m:,}-row CSV in → CSV out ({figures['csv_out_mb']:,.0f} MB; reading "
                 f"{figures['csv_read_s']:.2f} s of {figures['csv_total_s']:.2f} s)", rate(figures["csv_rate"]),
                 times(figures["csv_rate"])))
    rows.append(("baseline: single-site `assess()` in a loop (full document)", rate(base), "1×"))
    build = figures["grid_build_s"]
    rows.append((f"point grid build (once per dataset version; {figures['grid_leaves']:,} leaves)",
                 "built earlier" if build is None else f"{build:.2f} s", ""))
    rows.append(("point grid arrays in memory", f"{figures['grid_mb']:,.0f} MB", ""))
    if kernel:
        rows.append(("compiled distance kernel: import numba, compile or load from cache (once per process)",
                     f"{figures['kernel_load_s']:.2f} s", ""))
    _table(("batch points, one core (median of %d)" % repeat, "figure", "vs assess()"), rows, out)
    return figures


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: Callable[[str], Any]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    out("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        out("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="random points in the territory")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (median; at least 3)")
    args = parser.parse_args(argv)
    from app.domain.catalog import load_catalog  # noqa: PLC0415

    t0 = time.perf_counter()
    catalog = load_catalog(ROOT / "geodata", ROOT / "zones")
    print(f"catalog {catalog.dataset_version} loaded in {time.perf_counter() - t0:.1f} s; "
          f"{args.points:,} points, seed {args.seed}", flush=True)
    run(catalog, n=args.points, seed=args.seed, repeat=args.repeat, out=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
