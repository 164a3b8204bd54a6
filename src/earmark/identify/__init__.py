# SPDX-License-Identifier: Apache-2.0
"""Catalog identification: spectrogram → peaks → hashes → (index lookup) → match."""
