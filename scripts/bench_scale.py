"""Scale benchmark: the city dataset and generated province-scale datasets, side by side.

    python -m scripts.bench_scale                          # city, 1 %, 10 % and 100 % of the province
    python -m scripts.bench_scale --scales 0.01,0.1 --quick

Scale 1 is the province of issue 7 (20,000 units, 200,000 red-line patches, about 560,000 km²; see
`scripts/generate_province_dataset.py`); scale s has s × those counts on s × that area (the same density).
For each dataset, one row per table:

- size: units, red-line patches, vertices, GeoPackage size, unit clause files; generation time and peak memory,
  reported apart (a generated dataset is cached under --cache, keyed by its parameters and seed);
- load, each in a fresh process: the rule base (`load_rule_base`) and `load_catalog` (read, check, index) with
  resident memory after loading (VmRSS), retained over the interpreter with its imports, and the peak (VmHWM);
- queries in that process after loading: point lookup (`point_to_storage_metric` + `lookup_point`) in µs, the
  geometry of a 10 ha site (`units.index.touches` + red-line `index.distance`) and a full `assess()` in ms, and
  batch points/s through `app.domain.batch.screen` without and with the point grid, the grid's build time and
  memory.

Guards (the machine is shared): every child process has a time limit and a resident-memory cap (it is killed when
it passes either, and the row says so); a dataset whose peak memory while loading is projected (linearly in
vertices from the previous load) to pass the cap is not loaded unless --attempt-over-cap; the point grid is built
only if a lower bound of its size fits --grid-cap-gib, and the batch phases run with a time and address-space
limit; a rule base whose load is projected (from the last per-file cost) to exceed --rules-budget-s is not loaded:
the catalog then takes the city-wide clauses only, and the row says so. Outputs go under --cache (/tmp).
`run()` is the entry point for the main benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import pickle
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCALES = (0.01, 0.1, 1.0)
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "mzl-province-datasets"
DEFAULT_SEED = 20261129
MARK = "@@bench "  # prefix of the result lines a child prints
GIB = 2**30


# ---------------------------------------------------------------------------------------------------------------
# Child processes: run a command with a time limit and a memory cap, collect its result lines and peak memory


def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * GIB


def rss_bytes(pid: int) -> int:
    """Resident memory of a process in bytes (VmRSS)."""
    from scripts.benchmark_assessment import rss_kib

    return rss_kib(pid)[0] * 1024


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat)."""
    from scripts.benchmark_assessment import system_busy_s

    return system_busy_s()[0]


@dataclass
class ChildRun:
    """What one child process reported, and how it ended."""

    results: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    peak_rss: int = 0  # bytes (ru_maxrss)
    cpu_s: float = 0.0
    other_cores: float = 0.0  # CPU used by other processes on the machine during the run, in cores
    ended: str = "ok"  # ok | "killed: …" | "failed: …"
    log: list[str] = field(default_factory=list)


def run_child(cmd: Sequence[str], *, timeout_s: float, rss_cap: int, progress: Callable[[str], None] | None = None
              ) -> ChildRun:
    """Run `cmd` in its own process group; kill it past `timeout_s` or when its RSS passes `rss_cap`."""
    run = ChildRun()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    busy0, t0 = machine_busy_s(), time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(MARK):
                run.results.update(json.loads(line[len(MARK):]))
            else:
                run.log.append(line)
                if progress is not None:
                    progress(line)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    status, usage = None, None
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - t0
            rss = rss_bytes(proc.pid)
            run.peak_rss = max(run.peak_rss, rss)
            if elapsed > timeout_s or rss > rss_cap:
                run.ended = (f"killed after {elapsed:.0f} s (time limit {timeout_s:.0f} s)" if elapsed > timeout_s
                             else f"killed at {rss / GIB:.1f} GiB resident after {elapsed:.0f} s (cap "
                                  f"{rss_cap / GIB:.1f} GiB)")
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    finally:
        if status is None:  # interrupted: never leave the child running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
        proc.returncode = 0 if status is None else os.waitstatus_to_exitcode(status)
        thread.join(timeout=5)
    run.wall_s = time.perf_counter() - t0
    if usage is not None:
        run.peak_rss = max(run.peak_rss, usage.ru_maxrss * 1024)
        run.cpu_s = usage.ru_utime + usage.ru_stime
    run.other_cores = max(0.0, machine_busy_s() - busy0 - run.cpu_s) / run.wall_s if run.wall_s else 0.0
    if run.ended == "ok" and proc.returncode != 0:
        tail = next((line for line in reversed(run.log) if line.strip()), "")
        run.ended = f"failed (exit {proc.returncode}): {tail[-200:]}"
    return run


def emit(**values: Any) -> None:
    """Report results from a child to its parent (one JSON line)."""
    print(MARK + json.dumps(values), flush=True)


@contextlib.contextmanager
def reported(name: str, *, seconds: float | None = None, grow_bytes: float | None = None):
    """Run a measurement; if the code under test raises, report the error and go on with the next one.

    `seconds` bounds its time (an alarm raises TimeoutError once control is back in Python); `grow_bytes` bounds
    how much more address space it may take (allocations past it raise MemoryError).
    """
    import resource

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"over {seconds:.0f} s")

    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    if seconds:
        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    if grow_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (status_kib("VmSize") * 1024 + int(grow_bytes), old_limit[1]))
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the error is the result
        emit(**{f"{name}_error": f"{type(exc).__name__}: {exc}"[:300]})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, old_limit)


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Child: the rule base


def child_rules(spec: dict[str, Any]) -> None:
    from app.domain.rules import load_rule_base

    zones = Path(spec["zones"])
    files = len(list((zones / "units").glob("*.yaml")))
    t0 = time.perf_counter()
    rules = load_rule_base(zones)
    dt = time.perf_counter() - t0
    Path(spec["pickle"]).write_bytes(pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL))
    emit(rules_s=dt, clauses=len(rules.clauses), unit_files=files)


# ---------------------------------------------------------------------------------------------------------------
# Child: load the catalog, then the queries


def child_catalog(spec: dict[str, Any]) -> None:
    t_start = time.perf_counter()
    import numpy as np
    import shapely
    from pyproj import Transformer

    from app.domain import batch as engine
    from app.domain.assessment import assess
    from app.domain.catalog import load_catalog
    from app.domain.lookup import lookup_point
    from app.domain.rules import load_rule_base
    from app.geo.crs import from_metric, point_to_storage_metric
    from scripts.benchmark_assessment import PROJECT, random_points, random_squares, time_calls

    emit(imports_s=time.perf_counter() - t_start, rss_imports=status_kib("VmRSS") * 1024)
    dataset, zones = Path(spec["dataset"]), Path(spec["zones"])
    if spec.get("rules_pickle"):
        rules = pickle.loads(Path(spec["rules_pickle"]).read_bytes())
    else:
        t0 = time.perf_counter()
        rules = load_rule_base(zones)
        emit(rules_s=time.perf_counter() - t0, clauses=len(rules.clauses))
    rss0 = status_kib("VmRSS") * 1024
    t0 = time.perf_counter()
    catalog = load_catalog(dataset, zones, rules=rules)
    load_s = time.perf_counter() - t0
    import gc

    gc.collect()
    units, red = catalog.units, catalog.layers["red_line"]
    emit(load_s=load_s, rss_before_load=rss0, rss_after_load=status_kib("VmRSS") * 1024,
         hwm_after_load=status_kib("VmHWM") * 1024, units=len(units.records), patches=len(red.records),
         clauses=len(catalog.rules.clauses),
         unit_vertices=int(shapely.get_num_coordinates(units.geoms).sum()),
         red_vertices=int(shapely.get_num_coordinates(red.geoms).sum()),
         all_vertices=int(sum(shapely.get_num_coordinates(layer.geoms).sum() for layer in catalog.layers.values())),
         unit_pieces=len(units.index.pieces), red_pieces=len(red.index.pieces),
         territory_km2=catalog.territory.area / 1e6)

    n = spec["counts"]
    rng = np.random.default_rng(spec["seed"])
    back = Transformer.from_crs(4548, 4490, always_xy=True)
    xy = random_points(catalog, n["points"], rng)
    lon, lat = back.transform(xy[:, 0], xy[:, 1])
    pts = [(round(float(a), 7), round(float(b), 7)) for a, b in zip(lon, lat)]

    def service(lo: float, la: float) -> dict:
        glon, glat, x, y = point_to_storage_metric(lo, la, "EPSG:4490")  # what GET /v1/lookup does
        return lookup_point(catalog, x, y, glon, glat)

    with reported("lookup"):
        s = time_calls("lookup", service, pts)
        emit(lookup_us=[s.median, s.q(10), s.q(90)], lookup_n=s.n)

    sites = random_squares(random_points(catalog, n["sites"], rng), rng)
    with reported("site"):
        s = time_calls("site", lambda site: (units.index.touches(site), red.index.distance(site)),
                       [(g,) for g in sites])
        emit(site_ms=[s.median / 1e3, s.q(10) / 1e3, s.q(90) / 1e3], site_n=s.n)

    to_ll = lambda g: shapely.set_precision(  # noqa: E731 - as bench_sites does
        shapely.transform(g, lambda c: np.column_stack(back.transform(c[:, 0], c[:, 1]))), 1e-8)
    sites_ll = [(to_ll(g), PROJECT, catalog) for g in sites[: n["assess"]]]
    with reported("assess"):
        s = time_calls("assess", assess, sites_ll, warmup=3)
        emit(assess_ms=[s.median / 1e3, s.q(10) / 1e3, s.q(90) / 1e3], assess_n=s.n)

    # Batch points, built as tests/domain/test_batch.py::test_point_throughput builds them, screened block by
    # block (as screen_blocks does) so the per-site signature matrix stays one block in size.
    minx, miny, maxx, maxy = catalog.territory.bounds
    m = n["batch"]
    bx, by = rng.uniform(minx, maxx, 3 * m), rng.uniform(miny, maxy, 3 * m)
    inside = shapely.intersects_xy(catalog.territory, bx, by)
    bx, by = bx[inside][:m], by[inside][:m]
    blon, blat = from_metric(bx, by)
    m = blon.size
    t0 = time.perf_counter()
    prep = engine.prepared(catalog)
    emit(prepared_s=time.perf_counter() - t0, n_bits=prep.n_bits)
    collector = engine.SiteCollector()
    pid = collector.projects.add_raw({"industry_code": "3011", "construction_type": "new"})
    batch = engine.SiteBatch(ids=[str(i) for i in range(m)], kind=np.full(m, engine.KIND_POINT, np.int8),
                             lon=blon, lat=blat, geoms=np.full(m, None, object),
                             project_idx=np.full(m, pid, np.int32), projects=collector.projects.items,
                             errors=[None] * m)

    def screen_all(use_grid: bool) -> float:
        t = time.perf_counter()
        for start in range(0, m, engine.BLOCK_SITES):
            stop = min(start + engine.BLOCK_SITES, m)
            result = engine.screen(batch.block(start, stop), catalog, use_grid=use_grid, offset=start)
            assert all(v is not None for v in result.verdict)
        return time.perf_counter() - t

    rss = status_kib("VmRSS") * 1024
    with reported("batch_exact", seconds=spec["phase_s"], grow_bytes=spec["grow_cap"]):
        t = min(screen_all(False) for _ in range(spec["batch_runs"]))
        emit(batch_exact_pps=m / t, batch_n=m, batch_exact_rss_delta=status_kib("VmRSS") * 1024 - rss)

    # The point grid: cells over the territory's bounding box, a boolean per cell and signature bit.
    cell = engine.GRID_CELL_M
    bbox_cells = (math.ceil((maxx - minx) / cell) + 4) * (math.ceil((maxy - miny) / cell) + 4)
    active = catalog.territory.area / cell**2 * 1.05
    estimate = bbox_cells * 140 + active * (prep.n_bits + 200)
    emit(grid_estimate=estimate, grid_cells=bbox_cells)
    if estimate > spec["grid_cap"]:
        emit(grid_skipped=f"not built: needs at least {estimate / GIB:,.1f} GiB (a boolean per active 100 m cell "
                          f"and signature bit: {active / 1e6:,.1f} M cells × {prep.n_bits:,} bits, plus the "
                          f"bounding-box cells) > cap {spec['grid_cap'] / GIB:,.1f} GiB")
    else:
        rss = status_kib("VmRSS") * 1024
        with reported("grid", seconds=spec["phase_s"], grow_bytes=spec["grow_cap"]):
            t0 = time.perf_counter()
            prep.grid(catalog)
            emit(grid_s=time.perf_counter() - t0, grid_rss_delta=status_kib("VmRSS") * 1024 - rss)
            t = min(screen_all(True) for _ in range(spec["batch_runs"]))
            emit(batch_grid_pps=m / t)
    emit(hwm_end=status_kib("VmHWM") * 1024)


# ---------------------------------------------------------------------------------------------------------------
# The parent: datasets, children, tables


@dataclass
class Dataset:
    label: str
    path: Path
    zones: Path
    scale: float | None  # None for the city
    gen: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)
    cat: ChildRun | None = None
    skipped: str = ""
    projection: str = ""


def params_at(scale: float, seed: int):
    from scripts.generate_province_dataset import Params

    full = Params(seed=seed)
    return Params(units=max(40, round(full.units * scale)), red_patches=max(200, round(full.red_patches * scale)),
                  seed=seed)


def generate(ds: Dataset, params, cache: Path, *, timeout_s: float, rss_cap: int, out: Callable[[str], None]) -> None:
    """Generate (or reuse from the cache) the dataset of `params` into `ds.path`."""
    summary = ds.path / "generated.json"
    if summary.is_file():
        info = json.loads(summary.read_text())
        ds.gen = {"seconds": info["seconds"], "peak_rss": info.get("bench_peak_rss"), "cached": True, **info}
        return
    cmd = [sys.executable, "-m", "scripts.generate_province_dataset", "--out", str(ds.path), "--units",
           str(params.units), "--red-patches", str(params.red_patches), "--seed", str(params.seed)]
    last = [0.0]

    def progress(line: str) -> None:
        if time.perf_counter() - last[0] > 30 or "done:" in line:
            out(f"    {line}")
            last[0] = time.perf_counter()

    run = run_child(cmd, timeout_s=timeout_s, rss_cap=rss_cap, progress=progress)
    if run.ended != "ok" or not summary.is_file():
        ds.skipped = f"generation {run.ended}"
        shutil.rmtree(ds.path, ignore_errors=True)
        return
    info = json.loads(summary.read_text())
    info["bench_peak_rss"] = run.peak_rss
    summary.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    ds.gen = {"seconds": info["seconds"], "peak_rss": run.peak_rss, "cached": False, **info}


def citywide_only(zones: Path, work: Path) -> Path:
    """A copy of a rule base without its unit files (the fallback when the unit files are too many to load)."""
    target = work / "zones-citywide"
    if not target.exists():
        shutil.copytree(zones, target, ignore=lambda d, names: [n for n in names if Path(d).name == "units"])
    return target


class _Runner:
    """The measuring loop's settings and what earlier datasets taught it (per-file rule cost, the last load)."""

    def __init__(self, *, quick: bool, out: Callable[[str], None], seed: int, cache: Path, rss_cap: int,
                 child_timeout_s: float, grid_cap_gib: float, rules_budget_s: float, wait_quiet_s: float,
                 attempt_over_cap: bool) -> None:
        self.quick, self.out, self.seed, self.cache = quick, out, seed, cache
        self.rss_cap, self.child_timeout_s, self.grid_cap_gib = rss_cap, child_timeout_s, grid_cap_gib
        self.rules_budget_s, self.wait_quiet_s, self.attempt_over_cap = rules_budget_s, wait_quiet_s, attempt_over_cap
        self.counts = ({"points": 400, "sites": 100, "assess": 30, "batch": 50_000} if quick else
                       {"points": 2000, "sites": 500, "assess": 100, "batch": 200_000})
        self.per_file: tuple[float, str] | None = None  # rule-base seconds per unit file, and where measured
        self.prev_load: tuple[str, int, float, float] | None = None  # label, vertices, peak bytes, load s

    def child(self, spec: dict[str, Any], timeout_s: float) -> ChildRun:
        return run_child([sys.executable, "-m", "scripts.bench_scale", "--child", json.dumps(spec)],
                         timeout_s=timeout_s, rss_cap=self.rss_cap)

    def rule_base(self, ds: Dataset) -> tuple[Path, Path] | None:
        """Load the dataset's rule base in a fresh process (or its city-wide part, see the module docstring);
        return the rule folder the catalog takes and the pickled rule base."""
        work = self.cache / "work" / ds.path.name
        work.mkdir(parents=True, exist_ok=True)
        files = len(list((ds.zones / "units").glob("*.yaml")))
        projected = self.per_file[0] * files if self.per_file else None
        zones, pickled = ds.zones, work / "rules.pickle"
        if projected is not None and projected > self.rules_budget_s:
            ds.rules = {"skipped": f"not run (≈ {projected:,.0f} s)", "unit_files": files,
                        "note": f"rule base not loaded: {files:,} unit files × {self.per_file[0] * 1e3:.1f} ms a file "
                                f"(measured at {self.per_file[1]}) ≈ {projected:,.0f} s > budget "
                                f"{self.rules_budget_s:.0f} s"}
            self.out(f"{ds.label}: {ds.rules['note']}; the catalog takes the city-wide clauses")
            rr = None
        else:
            self.out(f"{ds.label}: loading the rule base ({files:,} unit files) in a fresh process …")
            rr = self.child({"mode": "rules", "zones": str(zones), "pickle": str(pickled)},
                            max(self.rules_budget_s * 1.5, 60.0))
            ds.rules = {**rr.results, "peak_rss": rr.peak_rss, "ended": rr.ended}
            if rr.ended == "ok" and files:
                self.per_file = (rr.results["rules_s"] / files, ds.label)
        if rr is None or rr.ended != "ok":
            zones, pickled = citywide_only(ds.zones, work), work / "rules-citywide.pickle"
            rr = self.child({"mode": "rules", "zones": str(zones), "pickle": str(pickled)}, self.child_timeout_s)
        ds.rules["citywide_only"] = zones != ds.zones
        if rr.ended != "ok":
            ds.skipped = f"rule base {rr.ended}"
            self.out(f"{ds.label}: {ds.skipped}")
            return None
        return zones, pickled

    def catalog(self, ds: Dataset, zones: Path, pickled: Path) -> None:
        """load_catalog and the queries in a fresh process, unless its memory is projected past the cap."""
        from scripts.benchmark_assessment import QUIET

        if self.prev_load is not None and ds.gen.get("vertices"):
            label, vertices, peak, secs = self.prev_load
            ratio = ds.gen["vertices"] / vertices
            ds.projection = (f"projected from {label} ({ratio:,.1f}× its vertices, linear): load_catalog "
                             f"≈ {secs * ratio:,.0f} s, peak ≈ {peak * ratio / GIB:,.1f} GiB")
            if peak * ratio > self.rss_cap and not self.attempt_over_cap:
                ds.skipped = f"not loaded: {ds.projection} > cap {self.rss_cap / GIB:,.1f} GiB"
                self.out(f"{ds.label}: {ds.skipped}")
                return
        self.out(f"{ds.label}: load_catalog and queries in a fresh process …")
        spec = {"mode": "catalog", "dataset": str(ds.path), "zones": str(zones), "rules_pickle": str(pickled),
                "seed": self.seed, "counts": self.counts, "batch_runs": 1 if self.quick else 2,
                "grid_cap": min(self.grid_cap_gib * GIB, 0.3 * mem_available()),
                "grow_cap": min(3 * self.grid_cap_gib * GIB, 0.5 * mem_available()),
                "phase_s": self.child_timeout_s / 3}
        if self.wait_quiet_s:
            QUIET.wait(0.5, self.wait_quiet_s)
        ds.cat = self.child(spec, self.child_timeout_s)
        if ds.cat.ended != "ok":
            self.out(f"{ds.label}: {ds.cat.ended}")
        c = ds.cat.results
        if "hwm_after_load" in c:
            self.prev_load = (ds.label, c["all_vertices"], c["hwm_after_load"], c["load_s"])


def run(scales: Sequence[float] = DEFAULT_SCALES, *, quick: bool = False, out: Callable[[str], None] = print,
        seed: int = DEFAULT_SEED, cache: Path = DEFAULT_CACHE, city: bool = True, budget_s: float | None = None,
        child_timeout_s: float | None = None, rss_cap_gib: float | None = None, grid_cap_gib: float = 4.0,
        rules_budget_s: float | None = None, wait_quiet_s: float | None = None,
        attempt_over_cap: bool = False) -> list[Dataset]:
    """Measure the city and the generated datasets at `scales` (shares of the province) and print the tables."""
    import numpy as np
    import shapely

    from scripts.benchmark_assessment import QUIET

    began = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    avail = mem_available()
    runner = _Runner(
        quick=quick, out=out, seed=seed, cache=cache,
        rss_cap=int((rss_cap_gib * GIB) if rss_cap_gib else min(16 * GIB, 0.75 * avail)),
        child_timeout_s=child_timeout_s or (600.0 if quick else 1800.0), grid_cap_gib=grid_cap_gib,
        rules_budget_s=rules_budget_s if rules_budget_s is not None else (60.0 if quick else 300.0),
        wait_quiet_s=wait_quiet_s if wait_quiet_s is not None else (0.0 if quick else 60.0),
        attempt_over_cap=attempt_over_cap)
    counts = runner.counts
    out("# Scale benchmark: city and generated province-scale datasets" + (" (--quick)" if quick else ""))
    out()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    out(f"Machine: {os.cpu_count()} CPUs ({cpu}), {avail / GIB:.1f} GiB available at start, load average "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3]) if Path('/proc/loadavg').exists() else '?'}; "
        f"Python {platform.python_version()}, shapely {shapely.__version__} / GEOS {shapely.geos_version_string}, "
        f"numpy {np.__version__}.")
    out(f"Seed {seed}; per dataset {counts['points']:,} lookups, {counts['sites']:,} site geometries, "
        f"{counts['assess']:,} assess() calls, {counts['batch']:,} batch points. Guards: each child process "
        f"≤ {runner.child_timeout_s:.0f} s and ≤ {runner.rss_cap / GIB:.1f} GiB resident; point grid built if "
        f"estimated ≤ {grid_cap_gib:g} GiB; unit rule files loaded if projected ≤ {runner.rules_budget_s:.0f} s. "
        f"Before each measuring process, waits up to {runner.wait_quiet_s:.0f} s for other processes to use under "
        f"0.5 cores. Cache: {cache}.")
    out()
    datasets: list[Dataset] = []
    if city:
        datasets.append(Dataset("city (Manzhouli)", ROOT / "geodata", ROOT / "zones", None))
    for s in scales:
        p = params_at(s, seed)
        datasets.append(Dataset(f"{s:.0%} province" if s >= 0.01 else f"{s:.1%} province",
                                cache / f"u{p.units}-p{p.red_patches}-{p.key()}", Path(), s))
    last_cost: tuple[float, float] | None = None  # (scale, seconds) of the last generated scale
    for ds in datasets:
        t_ds = time.perf_counter()
        if ds.scale is not None:
            p = params_at(ds.scale, seed)
            if budget_s is not None and last_cost is not None:
                projected = last_cost[1] * ds.scale / last_cost[0]
                left = budget_s - (time.perf_counter() - began)
                if projected > left:
                    ds.skipped = f"skipped: projected {projected:,.0f} s > {max(left, 0):,.0f} s left of the budget"
                    out(f"{ds.label}: {ds.skipped}")
                    continue
            out(f"{ds.label}: {p.units:,} units and {p.red_patches:,} patches (generated unless cached) …")
            generate(ds, p, cache, timeout_s=runner.child_timeout_s * 2, rss_cap=runner.rss_cap, out=out)
            if ds.skipped:
                out(f"{ds.label}: {ds.skipped}")
                continue
            ds.zones = ds.path / "zones"
        rules = runner.rule_base(ds)
        if rules is not None:
            runner.catalog(ds, *rules)
        if ds.scale is not None:
            last_cost = (ds.scale, (0 if ds.gen.get("cached") else ds.gen.get("seconds", 0))
                         + (time.perf_counter() - t_ds))
        out(f"{ds.label}: {time.perf_counter() - t_ds:,.0f} s")
    out()
    report(datasets, out)
    out()
    out(f"Total run time {time.perf_counter() - began:,.0f} s, of which {QUIET.waited:,.0f} s waiting for other "
        "processes to go below 0.5 cores.")
    return datasets


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: Callable[[str], None]) -> None:
    from scripts.benchmark_assessment import table

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        table(headers, rows)
    for line in buf.getvalue().splitlines():
        out(line)


def report(datasets: Sequence[Dataset], out: Callable[[str], None] = print) -> None:
    """The three tables and the growth line."""
    from scripts.benchmark_assessment import fmt

    def num(v: float | None) -> str:
        return "—" if v is None else f"{int(v):,}"

    def mib(v: float | None) -> str:
        return fmt(v / 2**20) if v else "—"

    def r(ds: Dataset, key: str) -> float | None:
        """A size from the loaded catalog, else from the generator's summary."""
        v = ds.cat.results.get(key) if ds.cat else None
        if v is None and ds.gen:
            layers = ds.gen.get("layers", {})
            v = {"units": ds.gen.get("units"), "patches": ds.gen.get("red_patches"),
                 "territory_km2": ds.gen.get("territory_km2"), "all_vertices": ds.gen.get("vertices"),
                 "unit_vertices": layers.get("control_units", {}).get("vertices"),
                 "red_vertices": layers.get("red_line", {}).get("vertices")}.get(key)
        return v

    out("## Datasets")
    out()
    rows = []
    for ds in datasets:
        size = (ds.path / "manzhouli.gpkg").stat().st_size if (ds.path / "manzhouli.gpkg").exists() else None
        g = ds.gen
        gen = ("—" if ds.scale is None else f"{fmt(g.get('seconds'))}{' (cached)' if g.get('cached') else ''}" if g
               else ds.skipped or "—")
        rows.append([ds.label, num(r(ds, "units")), num(r(ds, "patches")), num(r(ds, "territory_km2")),
                     num(r(ds, "unit_vertices")), num(r(ds, "red_vertices")), num(r(ds, "all_vertices")), mib(size),
                     num(ds.rules.get("unit_files")), gen,
                     fmt(g["peak_rss"] / GIB, 2) if g.get("peak_rss") else "—"])
    _table(["dataset", "units", "red-line patches", "km²", "unit vertices", "red-line vertices", "all vertices",
            "GeoPackage MiB", "unit rule files", "generation s", "generation peak GiB"], rows, out)
    out()
    out("Generation is not part of the service's cost. Vertices are those stored (EPSG:4490), every layer.")
    out()
    out("## Load, each in a fresh process")
    out()
    rows = []
    for ds in datasets:
        c = ds.cat.results if ds.cat else {}
        rules = ds.rules
        rules_s = rules.get("rules_s")
        rules_cell = (fmt(rules_s, 2) if rules_s is not None and not rules.get("skipped")
                      else (rules.get("skipped", "—")))
        load_s = c.get("load_s")
        measured = load_s is not None and rules_s is not None and not rules.get("skipped")
        total = rules_s + load_s if measured else None
        retained = c["rss_after_load"] - c["rss_imports"] if "rss_after_load" in c else None
        rows.append([ds.label, rules_cell, num(c.get("clauses")), fmt(load_s, 2), fmt(total, 2),
                     mib(c.get("rss_imports")), mib(c.get("rss_after_load")), mib(retained),
                     mib(c.get("hwm_after_load")), num(c.get("unit_pieces")), num(c.get("red_pieces")),
                     ds.cat.ended if ds.cat and ds.cat.ended != "ok" else ("not loaded" if ds.skipped else "ok")])
    _table(["dataset", "load_rule_base s", "clauses", "load_catalog s", "rules + catalog s", "RSS imports MiB",
            "RSS after load MiB", "retained MiB", "peak (VmHWM) MiB", "unit pieces", "red-line pieces", "ended"],
           rows, out)
    out()
    out("load_catalog s: `load_catalog(dataset, zones, rules=…)` with the rule base loaded before (read, validate, "
        "hash, reproject, index). RSS from /proc/self/status: after imports, after loading; retained = the "
        "difference; peak = VmHWM after loading (the rule base unpickled first counts in it).")
    if any(ds.rules.get("citywide_only") for ds in datasets):
        out("Where the rule base was not loaded, the catalog (and assess/batch below) ran with the city-wide "
            "clauses only.")
    for ds in datasets:
        if ds.rules.get("note"):
            out(f"{ds.label}: {ds.rules['note']}.")
        if ds.skipped:
            out(f"{ds.label}: {ds.skipped}.")
        elif ds.projection and ds.cat and ds.cat.ended != "ok":
            out(f"{ds.label}: {ds.cat.ended}; {ds.projection}.")
    out()
    out("## Queries in that process")
    out()
    rows = []
    for ds in datasets:
        c = ds.cat.results if ds.cat else {}
        lu, st, asm = c.get("lookup_us"), c.get("site_ms"), c.get("assess_ms")
        rows.append([ds.label,
                     fmt(lu[0]) if lu else "—", fmt(lu[1]) if lu else "—", fmt(lu[2]) if lu else "—",
                     fmt(st[0], 3) if st else "—", fmt(st[2], 3) if st else "—",
                     fmt(asm[0], 2) if asm else "—", fmt(asm[2], 2) if asm else "—",
                     fmt(c.get("batch_exact_pps")), fmt(c.get("prepared_s"), 2),
                     fmt(c.get("grid_s"), 1) if "grid_s" in c else ("not built" if "grid_skipped" in c else "—"),
                     mib(c.get("grid_rss_delta")), fmt(c.get("batch_grid_pps"))])
    _table(["dataset", "lookup median µs", "p10", "p90", "site geometry median ms", "p90",
            "assess() median ms", "p90", "batch points/s (exact)", "batch prepare s", "point grid build s",
            "grid MiB", "batch points/s (grid)"], rows, out)
    out()
    for ds in datasets:
        c = ds.cat.results if ds.cat else {}
        if "grid_skipped" in c:
            out(f"{ds.label}: point grid {c['grid_skipped']}.")
        elif "grid_estimate" in c:
            out(f"{ds.label}: point grid: lower-bound estimate {c['grid_estimate'] / GIB:,.2f} GiB before building "
                f"({c['grid_cells'] / 1e6:,.2f} M cells in the bounding box, {c['n_bits']:,} signature bits).")
        for key in sorted(k for k in c if k.endswith("_error")):
            out(f"{ds.label}: {key[:-6]} failed: {c[key]}")
        if ds.cat and ds.cat.other_cores > 0.25:
            out(f"{ds.label}: other processes used {ds.cat.other_cores:.2f} cores during its measurements.")
    base = next((ds for ds in datasets if ds.scale is None and ds.cat and ds.cat.ended == "ok"), None)
    if base is None:
        return
    b = base.cat.results
    out()
    out("## Growth vs the city")
    out()
    for ds in datasets:
        if ds is base or not (ds.cat or ds.gen):
            continue
        c = ds.cat.results if ds.cat else {}

        def x(key: str, i: int | None = None) -> str:
            a, z = c.get(key) if key in c else r(ds, key), b.get(key)
            if a is None or z is None:
                return "—"
            a, z = (a[i], z[i]) if i is not None else (a, z)
            return f"{a / z:,.1f}×" if z else "—"

        if "load_s" not in c:
            out(f"- {ds.label}: data {x('all_vertices')} vertices ({x('units')} units, {x('patches')} patches) → "
                f"not loaded{': ' + ds.projection if ds.projection else ''}.")
            continue

        ret = (c["rss_after_load"] - c["rss_imports"]) / (b["rss_after_load"] - b["rss_imports"]) \
            if "rss_after_load" in c and "rss_after_load" in b else None
        out(f"- {ds.label}: data {x('all_vertices')} vertices ({x('units')} units, {x('patches')} patches) → "
            f"load_catalog {x('load_s')}, retained memory {f'{ret:,.1f}×' if ret else '—'}, "
            f"lookup {x('lookup_us', 0)}, "
            f"site geometry {x('site_ms', 0)}, assess() {x('assess_ms', 0)}, batch points/s (exact) "
            f"{x('batch_exact_pps')}.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default=",".join(f"{s:g}" for s in DEFAULT_SCALES),
                        help="shares of the province, comma-separated (default 0.01,0.1,1)")
    parser.add_argument("--quick", action="store_true", help="fewer calls and smaller batches (a smoke run)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where generated datasets are kept")
    parser.add_argument("--no-city", action="store_true", help="leave out the city dataset")
    parser.add_argument("--budget-s", type=float, help="stop before a scale whose projected cost exceeds what is left")
    parser.add_argument("--child-timeout-s", type=float,
                        help="time limit of each measuring process (default 1800, quick 600)")
    parser.add_argument("--rss-cap-gib", type=float,
                        help="resident memory cap of each child (default min(16, 75 %% of available))")
    parser.add_argument("--grid-cap-gib", type=float, default=4.0, help="largest estimated point grid to build")
    parser.add_argument("--rules-budget-s", type=float,
                        help="largest projected rule-base load to run (default 300, quick 60)")
    parser.add_argument("--wait-quiet", type=float,
                        help="seconds to wait for other processes to go below 0.5 cores before each measuring "
                             "process (default 60, quick 0)")
    parser.add_argument("--attempt-over-cap", action="store_true",
                        help="load a dataset even when its projected peak memory exceeds the cap (killed at the cap)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        {"rules": child_rules, "catalog": child_catalog}[spec["mode"]](spec)
        return 0
    # A terminated run still kills its children (run_child's cleanup runs on SystemExit).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scales = [float(s) for s in args.scales.split(",") if s.strip()]
    if any(not 0 < s <= 1 for s in scales):
        parser.error("--scales: shares in (0, 1]")
    run(scales, quick=args.quick, seed=args.seed, cache=args.cache, city=not args.no_city, budget_s=args.budget_s,
        child_timeout_s=args.child_timeout_s, rss_cap_gib=args.rss_cap_gib, grid_cap_gib=args.grid_cap_gib,
        rules_budget_s=args.rules_budget_s, wait_quiet_s=args.wait_quiet, attempt_over_cap=args.attempt_over_cap)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
