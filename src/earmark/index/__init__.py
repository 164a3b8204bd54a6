# SPDX-License-Identifier: Apache-2.0
"""The inverted index of hashes → (reference, time), behind the :class:`IndexBackend` protocol."""

from earmark.index.base import Candidates, IndexBackend, IndexItem, IndexStats

__all__ = ["Candidates", "IndexBackend", "IndexItem", "IndexStats"]
