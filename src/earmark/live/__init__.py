# SPDX-License-Identifier: Apache-2.0
"""Live stream monitoring: sources, incremental prints, the per-stream matcher, events."""
