"""GET /v1/dataset and GET /healthz."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api.deps import get_catalog
from app.domain.catalog import Catalog
from app.models.common import Dataset, Health, LayerInfo

router = APIRouter(tags=["dataset"])


@router.get("/v1/dataset", response_model=Dataset, summary="Version and provenance of the data and rules in use")
def dataset(catalog: Annotated[Catalog, Depends(get_catalog)]) -> Dataset:
    layers = [
        LayerInfo(name=name, title_zh=layer.spec.title_zh, features=len(layer.records),
                  source=catalog.provenance.get(name, {}).get("source", ""),
                  provenance=catalog.provenance.get(name, {}).get("provenance", ""), content_hash=layer.content_hash)
        for name, layer in catalog.layers.items()
    ]
    info = catalog.info
    return Dataset(
        dataset_version=catalog.dataset_version, dataset_id=catalog.dataset_id, dataset_hash=catalog.content_hash,
        illustrative=catalog.illustrative,
        provenance=info.get("provenance", ""), provenance_zh=info.get("provenance_zh", ""),
        reference_date=info.get("reference_date"), storage_crs=info.get("storage_crs", "EPSG:4490"),
        metric_crs=info.get("metric_crs", "EPSG:4548"), rules_version=catalog.rules.version,
        clause_count=len(catalog.rules.clauses), layers=layers,
    )


@router.get("/healthz", response_model=Health, summary="Liveness and the versions being served")
def healthz(catalog: Annotated[Catalog, Depends(get_catalog)]) -> Health:
    return Health(status="ok", dataset_version=catalog.dataset_version, rules_version=catalog.rules.version)
