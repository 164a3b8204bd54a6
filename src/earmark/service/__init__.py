# SPDX-License-Identifier: Apache-2.0
"""What the CLI and the API both call: keyword-only service functions."""

from earmark.service.catalog import (
    AddReport,
    Catalog,
    ReferenceOut,
    RepairReport,
    add_references,
    list_references,
    open_catalog,
    remove_reference,
    stats,
)
from earmark.service.ingest import AddOutcome, collect_inputs, fingerprint_file, read_manifest
from earmark.service.scan import MatchOut, ScanResult, SegmentOut, scan_file, scan_paths

__all__ = [
    "AddOutcome",
    "AddReport",
    "Catalog",
    "MatchOut",
    "ReferenceOut",
    "RepairReport",
    "ScanResult",
    "SegmentOut",
    "add_references",
    "collect_inputs",
    "fingerprint_file",
    "list_references",
    "open_catalog",
    "read_manifest",
    "remove_reference",
    "scan_file",
    "scan_paths",
    "stats",
]
