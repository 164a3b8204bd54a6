# SPDX-License-Identifier: Apache-2.0
"""One settings object, read from ``EARMARK_*`` environment variables, with safe defaults.

>>> from earmark.config import Settings
>>> Settings(home="/tmp/cat").home.name
'cat'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from earmark.audio.decode import DEFAULT_MAX_SECONDS


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """earmark's settings; each field reads ``EARMARK_<NAME>`` (``EARMARK_HOME``, ...)."""

    model_config = SettingsConfigDict(env_prefix="EARMARK_", extra="ignore")

    home: Path = Field(
        default=Path("earmark-data"),
        description="Catalog folder: catalog.sqlite and index/ (CLI: --db).",
    )
    max_seconds: float = Field(
        default=DEFAULT_MAX_SECONDS, gt=0,
        description="Longest input decoded, in seconds; longer ones fail with input_too_long.",
    )
    jobs: int = Field(
        default_factory=_default_jobs, ge=1,
        description="Worker processes that fingerprint references (1: in-process).",
    )
    # -- the moderation service (earmark serve / worker) --
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the service database; default SQLite in home.",
    )
    secret: str | None = Field(
        default=None, min_length=32, repr=False,
        description="Signs UI sessions and CSRF tokens; `earmark serve` refuses to start "
                    "without one outside --dev (EARMARK_SECRET, ≥32 characters).",
    )
    max_upload_mb: float = Field(
        default=200.0, gt=0, description="Largest upload accepted, in MB (413 above).")
    max_upload_seconds: float = Field(
        default=3600.0, gt=0, description="Longest upload accepted, in seconds (413 above).")
    scan_paths: Path | None = Field(
        default=None,
        description="A server folder whose files may be scanned by path (off when unset).",
    )
    detector: str = Field(default="residue", description="AI detector run on every scan.")
    # -- scale-out (docs/scaling.md) --
    ray_address: str | None = Field(
        default=None,
        description="Serve the index shards from Ray actors on this cluster (host:port, "
                    "'auto' or 'local'; needs earmark[ray]); unset: in this process.",
    )
    index_replicas: int = Field(
        default=1, ge=1, description="Ray actors serving each index shard (with ray_address).")


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (``None`` values ignored) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
