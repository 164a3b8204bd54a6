# SPDX-License-Identifier: Apache-2.0
"""earmark: on-premise music moderation — catalog identification robust to edits."""

__version__ = "0.1.0"
