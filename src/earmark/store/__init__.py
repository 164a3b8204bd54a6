# SPDX-License-Identifier: Apache-2.0
"""Storage: SQLAlchemy models and repositories (SQLite by default)."""

from earmark.store.catalog import PENDING, READY, CatalogStore, Reference

__all__ = ["PENDING", "READY", "CatalogStore", "Reference"]
