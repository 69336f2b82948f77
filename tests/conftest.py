"""Shared fixtures: the reference catalog and a running app on the embedded data (loaded once per session)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*httpx2.*")

from fastapi.testclient import TestClient  # noqa: E402

from app.domain.catalog import Catalog, load_catalog  # noqa: E402
from app.main import create_app  # noqa: E402
from app.settings import DataSettings, Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GEODATA = ROOT / "geodata"
ZONES = ROOT / "zones"
MINI = ROOT / "tests" / "fixtures" / "mini"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The embedded reference dataset and rule base, indexed."""
    return load_catalog(GEODATA, ZONES)


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("store")
    return Settings(data=DataSettings(dataset_dir=GEODATA, zones_dir=ZONES, store_path=root / "assessments.sqlite3",
                                      versions_dir=root / "versions"))


@pytest.fixture(scope="session")
def client(app_settings: Settings):
    """A TestClient on the service with the embedded data (lifespan run once)."""
    app = create_app(app_settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
