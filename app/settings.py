"""Service settings: small pydantic-settings classes, read once by `create_app` (never at import time)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class DataSettings(BaseSettings):
    """Where the zoning dataset, the rule base and the assessment store live."""

    model_config = SettingsConfigDict(env_prefix="MZL_", extra="ignore")

    dataset_dir: Path = Field(ROOT / "geodata", description="Folder with manzhouli.gpkg and landcover.tif")
    zones_dir: Path = Field(ROOT / "zones", description="The access-list rule base")
    store_path: Path = Field(ROOT / "var" / "assessments.sqlite3", description="SQLite file of stored assessments")
    versions_dir: Path = Field(ROOT / "var" / "store", description="Versioned dataset store (registry + versions)")


class LimitSettings(BaseSettings):
    """Bounds on request size and work, so that no input can take the process down."""

    model_config = SettingsConfigDict(env_prefix="MZL_", extra="ignore")

    max_body_bytes: int = Field(2_000_000, description="Largest accepted request body")
    max_vertices: int = Field(20_000, description="Most vertices in one site geometry")
    max_survey_bytes: int = Field(1_000_000, description="Largest survey coordinate file")
    max_upload_bytes: int = Field(200_000_000, description="Largest boundary upload")
    proximity_buffer_m: float = Field(500.0, ge=0, le=5000, description="Distance within which protected layers are reported")
    report_cache_bytes: int = Field(64_000_000, ge=0, description="Rendered reports kept in memory per worker (0: none)")


class AccessSettings(BaseSettings):
    """Who may do what."""

    model_config = SettingsConfigDict(env_prefix="MZL_", extra="ignore")

    require_officer_key: bool = Field(False, description="Lookups and assessments need an officer key")
    bootstrap_admin_key: str | None = Field(
        None, min_length=24, description="Registered as an admin key at start-up if not known yet (first admin)")
    public_base_url: str | None = Field(
        None, pattern=r"^https?://", description="Base URL printed on reports (QR code); default: the request's own")


class Settings(BaseSettings):
    """All settings of one service instance."""

    model_config = SettingsConfigDict(env_prefix="MZL_", extra="ignore")

    data: DataSettings = Field(default_factory=DataSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
