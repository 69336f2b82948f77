"""Dataset versions in service: the current catalog, uploads that become drafts, publish, roll back, diff, as-of.

`DatasetService` owns the in-memory catalog of the current version. A request reads `service.current` once and
uses that catalog to the end, so it sees one version from start to end; publishing loads and verifies the new
version first and then replaces the reference in one assignment, so concurrent queries never fail and never mix.
Other worker processes notice the move through the store's CURRENT file and load the new version in a
background thread, serving the old one until it is ready.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import shapely
import shapely.geometry

from app.domain.assessment import assess
from app.domain.catalog import GPKG_NAME, Catalog, dataset_hash, load_catalog
from app.domain.diff import diff_layers
from app.domain.rules import RuleBase, load_rule_base
from app.domain.schema import (
    DATASET_TABLE,
    LAND_COVER_CLASS_TABLE,
    LAYERS,
    PROVENANCE_ILLUSTRATIVE,
    PROVENANCE_TABLE,
    STORAGE_EPSG,
)
from app.domain.validation import report_to_gpkg, validate_draft
from app.domain.versions import Actor, VersionStore, now
from app.errors import Conflict, DataError, InvalidInput, NotFound, ZoningError
from app.geo.upload import Upload
from app.geo.vector_io import content_hash, list_layers, read_layer, read_table, write_layer, write_table

log = logging.getLogger("app.datasets")
REPORT_GPKG = "validation.gpkg"


@dataclass(frozen=True)
class StagedUpload:
    """An upload mapped onto the contract: the draft's layers and what was replaced, with notes on the mapping."""

    layers: dict[str, gpd.GeoDataFrame]
    replaced: list[str]
    notes: list[str]


class DatasetService:
    """The versioned datasets behind the API: one per process."""

    def __init__(self, store: VersionStore, zones_dir: Path, *, cache_size: int = 2) -> None:
        self.store = store
        self.zones_dir = zones_dir
        self.rules: RuleBase = load_rule_base(zones_dir)
        self.current: Catalog | None = None
        self._marker: tuple[int, int] | None = None
        self._reloading = threading.Lock()
        self._swap = threading.Lock()  # orders every replacement of `current` (publish here vs reload)
        self._loading: dict[str, threading.Lock] = {}
        self._cache: OrderedDict[str, Catalog] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    # -- start-up and refresh ------------------------------------------------------------------------------------

    def start(self, seed_dir: Path) -> Catalog:
        """Recover the store, import the seed dataset if the store is empty, and load the current version."""
        abandoned = self.store.recover()
        if abandoned:
            log.warning("abandoned unfinished versions at start-up: %s", abandoned)
        if self.store.current() is None:
            seed = load_catalog(seed_dir, self.zones_dir, rules=self.rules)
            self.store.bootstrap(seed_dir, seed.content_hash, seed.dataset_id)
        self._marker = self.store.current_marker()
        self.current = self.load(self.store.current())
        return self.current

    def load(self, version_id: str) -> Catalog:
        """Load one version's catalog and refuse it if its content no longer matches the recorded hash."""
        catalog = load_catalog(self.store.path_of(version_id), self.zones_dir, version=version_id, rules=self.rules)
        self.store.check_integrity(version_id, catalog.content_hash)
        return catalog

    def refresh(self) -> None:
        """Notice a pointer moved by another process and load the new current version in the background."""
        marker = self.store.current_marker()
        if marker == self._marker or not self._reloading.acquire(blocking=False):
            return

        def reload() -> None:
            try:
                version_id = self.store.current_file_version()
                if not version_id:
                    return
                catalog = None
                if self.current is None or version_id != self.current.version:
                    catalog = self.load(version_id)
                with self._swap:
                    # Only if the pointer still names what was loaded: a publish in this process, or another
                    # move meanwhile, must not be undone by a slower reload.
                    if self.store.current_file_version() == version_id:
                        if catalog is not None:
                            self.current = catalog
                        self._marker = marker
            except Exception:
                log.exception("could not load the current version; still serving %s",
                              self.current.version if self.current else None)
            finally:
                self._reloading.release()

        threading.Thread(target=reload, name="catalog-reload", daemon=True).start()

    def catalog_for(self, version_id: str | None) -> Catalog:
        """The catalog of a published version (for "as of" assessments), or the current one."""
        current = self.current
        if version_id is None or (current is not None and version_id == current.version):
            return current
        version = self.store.get(version_id)
        if version.status != "published":
            raise Conflict(f"版本 {version.id} 是未发布的草稿，不能用于正式分析；只能按已发布的版本分析",
                           detail=f"as_of a draft {version.id}")
        with self._cache_lock:
            lock = self._loading.setdefault(version.id, threading.Lock())
        with lock:  # one load per version however many requests ask for it at once
            with self._cache_lock:
                if version.id in self._cache:
                    self._cache.move_to_end(version.id)
                    return self._cache[version.id]
            catalog = self.load(version.id)
            with self._cache_lock:
                self._cache[version.id] = catalog
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return catalog

    # -- uploads -------------------------------------------------------------------------------------------------

    def upload(self, actor: Actor, upload: Upload, *, filename: str, target: str | None = None,
               layer_map: Mapping[str, str] | None = None, field_map: Mapping[str, str] | None = None,
               note: str = "", approval_ref: str | None = None,
               progress: Callable[[str], None] = lambda _: None) -> tuple[str, dict[str, Any]]:
        """Turn an uploaded file into a draft version with its validation report; return (version id, report)."""
        # The registry's current version, not this process's catalog, which may still be catching up.
        parent = self.store.get(self.store.current())
        parent_dir = self.store.path_of(parent.id)
        progress("读取当前版本")
        current_layers = {name: read_layer(parent_dir / GPKG_NAME, name) for name in LAYERS
                          if name in set(list_layers(parent_dir / GPKG_NAME))}
        staged = stage_upload(upload, current_layers, target=target, layer_map=layer_map, field_map=field_map)
        progress(f"校验 {', '.join(staged.replaced)}")
        report = validate_draft(staged.layers, current_layers, replaced=staged.replaced, rules=self.rules,
                                approval_ref=approval_ref)
        report.setdefault("notes", []).extend(staged.notes + list(upload.warnings))
        hashes = {name: content_hash(frame) for name, frame in staged.layers.items()}
        parent_prov = read_table(parent_dir / GPKG_NAME, PROVENANCE_TABLE).set_index("layer")
        hashes["land_cover"] = str(parent_prov.content_hash["land_cover"])
        digest = dataset_hash(hashes)
        stamp = now()

        def write(folder: Path) -> None:
            progress("写入草稿版本")
            gpkg = folder / GPKG_NAME
            for name, frame in staged.layers.items():
                write_layer(gpkg, frame, name, title=LAYERS[name].title_zh)
            rows = []
            for name in list(staged.layers) + ["land_cover"]:
                if name in staged.replaced:
                    rows.append({"layer": name, "title_zh": LAYERS[name].title_zh,
                                 "source": f"上传文件 {filename}（{upload.format}）",
                                 "provenance": f"uploaded by {actor.label} at {stamp}",
                                 "provenance_zh": f"由 {actor.name} 于 {stamp} 上传", "generated_by": "upload",
                                 "content_hash": hashes[name]})
                else:
                    row = parent_prov.loc[name].to_dict()
                    rows.append({"layer": name, **{k: str(v) for k, v in row.items()}, "content_hash": hashes[name]})
            prov = pd.DataFrame(rows)
            write_table(gpkg, prov, PROVENANCE_TABLE, description="每个图层的来源与性质")
            write_table(gpkg, read_table(parent_dir / GPKG_NAME, LAND_COVER_CLASS_TABLE), LAND_COVER_CLASS_TABLE)
            info = dict(read_table(parent_dir / GPKG_NAME, DATASET_TABLE)[["key", "value"]].values)
            illustrative = bool((prov.provenance == PROVENANCE_ILLUSTRATIVE).any())
            info.update({"content_hash": digest, "illustrative": "true" if illustrative else "false",
                         "parent_version": parent.id, "uploaded_at": stamp})
            write_table(gpkg, pd.DataFrame([{"key": k, "value": str(v)} for k, v in info.items()]), DATASET_TABLE)
            tif = info.get("land_cover_file", "landcover.tif")
            shutil.copy2(parent_dir / tif, folder / tif)
            report_to_gpkg(report, folder / REPORT_GPKG)

        version_id = self.store.create_version(
            actor, parent=parent.id, note=note, source=filename, replaced_layers=staged.replaced, writer=write,
            content_hash=digest, dataset_id=parent.dataset_id, report=report, approval_ref=approval_ref)
        return version_id, report

    # -- pointer moves -------------------------------------------------------------------------------------------

    def publish(self, actor: Actor, version_id: str, *, acknowledge_warnings: bool = False, note: str = "") -> str | None:
        """Make a draft current after checking its report; the new catalog is loaded and verified first."""
        return self._move(actor, version_id, action="publish", acknowledge_warnings=acknowledge_warnings, note=note)

    def rollback(self, actor: Actor, version_id: str, *, note: str = "") -> str | None:
        """Make an earlier published version current again."""
        return self._move(actor, version_id, action="rollback", note=note)

    def _move(self, actor: Actor, version_id: str, *, action: str, acknowledge_warnings: bool = False,
              note: str = "") -> str | None:
        loaded: dict[str, Catalog] = {}

        def verify(vid: str) -> None:
            loaded["catalog"] = self.load(vid)

        previous = self.store.set_current(version_id, actor, action=action, require_clean=action == "publish",
                                          acknowledge_warnings=acknowledge_warnings, note=note, verify=verify)
        with self._swap:
            if self.store.current_file_version() == version_id:
                self.current = loaded["catalog"]
                self._marker = self.store.current_marker()
        return previous

    # -- reading versions ----------------------------------------------------------------------------------------

    def layers_of(self, version_id: str) -> dict[str, gpd.GeoDataFrame]:
        path = self.store.path_of(self.store.get(version_id).id) / GPKG_NAME
        present = set(list_layers(path))
        return {name: read_layer(path, name) for name in LAYERS if name in present}

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """What changed from version a to version b."""
        return {"from": a, "to": b, **diff_layers(self.layers_of(a), self.layers_of(b))}

    def impact(self, version_id: str, documents, *, base_id: str | None = None, buffer_m: float = 500.0,
               limit: int = 100_000) -> dict[str, Any]:
        """Re-screen stored assessments on two versions; list those whose verdict, units or red-line status change.

        `documents` yields (id, stored bytes). The base is the version's parent for a draft, else the current
        version; both sides are re-screened with today's rules, so the comparison isolates the data change.
        """
        version = self.store.get(version_id)
        base = self.store.get(base_id or version.parent or self.store.current())
        try:
            after = self.current if self.current and self.current.version == version.id else self.load(version.id)
        except DataError as exc:
            raise Conflict(f"版本 {version.id} 无法加载（{exc.message_zh}），须先修正校验错误才能评估影响",
                           detail=f"impact: {version.id} does not load: {exc.detail}") from exc
        before = self.current if self.current and self.current.version == base.id else self.load(base.id)
        changed, screened, unreadable = [], 0, 0
        for assessment_id, body in documents:
            if screened >= limit:
                break
            doc = orjson.loads(body)
            try:
                site = shapely.geometry.shape(doc["site"]["geometry"])
                old = assess(site, doc.get("project", {}), before, buffer_m=buffer_m)
                new = assess(site, doc.get("project", {}), after, buffer_m=buffer_m)
            except (KeyError, TypeError, ValueError, ZoningError):
                unreadable += 1
                continue
            screened += 1
            diff = _impact_of(old, new)
            if diff:
                changed.append({"assessment": assessment_id, "project": doc.get("project", {}).get("name", ""),
                                "stored_verdict": doc.get("verdict"), "stored_version": doc.get("dataset_version"),
                                **diff})
        return {"version": version.id, "base": base.id, "screened": screened, "unreadable": unreadable,
                "changed": len(changed), "truncated": screened >= limit, "assessments": changed,
                "computed_at": now(), "rules_version": self.rules.version}

    def save_impact(self, result: dict[str, Any]) -> None:
        """Keep the latest impact computation with the version (a snapshot: stored assessments keep arriving)."""
        folder = self.store.root / "impact"
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{result['version']}.json.tmp"
        tmp.write_bytes(orjson.dumps(result))
        tmp.replace(folder / f"{result['version']}.json")

    def saved_impact(self, version_id: str) -> dict[str, Any] | None:
        path = self.store.root / "impact" / f"{self.store.get(version_id).id}.json"
        return orjson.loads(path.read_bytes()) if path.is_file() else None

    def export_path(self, version_id: str) -> Path:
        return self.store.path_of(self.store.get(version_id).id) / GPKG_NAME

    def report_path(self, version_id: str) -> Path:
        path = self.store.path_of(self.store.get(version_id).id) / REPORT_GPKG
        if not path.is_file():
            raise NotFound(f"版本 {version_id} 没有校验问题图层", detail=f"{version_id}: no {REPORT_GPKG}")
        return path


# --------------------------------------------------------------------------------------------------------------
# Mapping an upload onto the dataset contract
# --------------------------------------------------------------------------------------------------------------


def _impact_of(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What changed for one site between two screenings, or None."""
    units_old = sorted(u["code"] for u in old.get("units", []))
    units_new = sorted(u["code"] for u in new.get("units", []))
    red_old, red_new = old["red_line"]["inside"], new["red_line"]["inside"]
    if old["verdict"] == new["verdict"] and units_old == units_new and red_old == red_new:
        return None
    return {
        "verdict": {"before": old["verdict"], "after": new["verdict"]},
        "units": {"before": units_old, "after": units_new},
        "red_line_inside": {"before": red_old, "after": red_new},
        "red_line_overlap_m2": {"before": old["red_line"]["overlap_m2"], "after": new["red_line"]["overlap_m2"]},
    }


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def stage_upload(upload: Upload, current: Mapping[str, gpd.GeoDataFrame], *, target: str | None = None,
                 layer_map: Mapping[str, str] | None = None,
                 field_map: Mapping[str, str] | None = None) -> StagedUpload:
    """Map the file's layers and fields onto contract layers; the result is the current layers with those replaced.

    Layers: `layer_map` (file layer → contract layer) first, then `target` for a one-layer file, then a file
    layer named like a contract layer (or its Chinese title). Fields: `field_map` (file field → contract field)
    first, then the contract name itself case-insensitively, then its first ten characters (the Shapefile limit).
    """
    notes: list[str] = []
    titles = {spec.title_zh: name for name, spec in LAYERS.items()}
    mapping: dict[str, str] = {}
    for layer in upload.layers:
        wanted = (layer_map or {}).get(layer.name)
        if wanted is None and target and len(upload.layers) == 1:
            wanted = target
        if wanted is None:
            wanted = next((n for n in LAYERS if _norm(n) == _norm(layer.name)), None) or titles.get(layer.name)
        if wanted is None:
            raise InvalidInput(
                f"无法确定文件图层“{layer.name}”对应哪个数据图层：请用 layer 参数指定（如 control_units、red_line），"
                f"或用 layers 参数给出对应关系。可用图层：{', '.join(LAYERS)}",
                detail=f"unmapped upload layer {layer.name!r}", file_layer=layer.name)
        if wanted not in LAYERS:
            raise InvalidInput(f"未知的数据图层 {wanted}，可用图层：{', '.join(LAYERS)}", detail=f"unknown layer {wanted!r}",
                               layer=str(wanted)[:60])
        if wanted in mapping.values():
            raise InvalidInput(f"文件中有多个图层对应数据图层 {wanted}，请只保留一个", detail=f"two file layers map to {wanted}",
                               layer=wanted)
        mapping[layer.name] = wanted
    layers = dict(current)
    replaced = []
    for layer in upload.layers:
        name = mapping[layer.name]
        frame, layer_notes = _map_fields(layer.frame, name, field_map or {})
        notes.extend(f"{name}：{n}" for n in layer_notes)
        layers[name] = frame
        replaced.append(name)
    return StagedUpload(layers={n: layers[n] for n in LAYERS if n in layers}, replaced=replaced, notes=notes)


def _map_fields(frame: gpd.GeoDataFrame, layer: str, field_map: Mapping[str, str]) -> tuple[gpd.GeoDataFrame, list[str]]:
    spec = LAYERS[layer]
    notes = []
    columns = [c for c in frame.columns if c != frame.geometry.name]
    chosen: dict[str, str] = {}
    for src, dst in field_map.items():
        if src in columns and dst in spec.fields:
            chosen[dst] = src
    for field in spec.fields:
        if field in chosen:
            continue
        match = next((c for c in columns if c == field), None) \
            or next((c for c in columns if c.lower() == field.lower()), None) \
            or next((c for c in columns if c.lower() == field.lower()[:10]), None)
        if match is not None:
            chosen[field] = match
            if match != field:
                notes.append(f"字段 {match} 识别为 {field}")
    dropped = [c for c in columns if c not in chosen.values()]
    if dropped:
        notes.append(f"未使用的字段：{', '.join(dropped[:20])}")
    out = {}
    for field, kind in spec.fields.items():
        if field not in chosen:
            continue  # left out: the validation report names the missing field
        out[field] = _coerce(frame[chosen[field]], kind)
    geometry = [_as_multi(g) if spec.geometry == "polygon" else g for g in frame.geometry.values]
    result = gpd.GeoDataFrame(out, geometry=geometry, crs=STORAGE_EPSG)
    return result, notes


def _coerce(values: pd.Series, kind: str) -> pd.Series:
    """Contract types without losing information: integral floats become integer text, nulls stay null."""
    if kind == "int":
        return pd.to_numeric(values, errors="coerce").astype("Int64")
    if kind == "float":
        return pd.to_numeric(values, errors="coerce").astype("float64")

    def text(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        if hasattr(v, "isoformat"):
            return v.isoformat()[:10]
        return str(v)

    return values.map(text).astype(object)


def _as_multi(geom):
    if geom is not None and geom.geom_type == "Polygon":
        return shapely.MultiPolygon([geom])
    return geom
