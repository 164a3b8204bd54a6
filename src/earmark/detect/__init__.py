# SPDX-License-Identifier: Apache-2.0
"""AI-music detection: per-segment probabilities that audio came out of a neural generator.

:mod:`earmark.detect.base` holds the :class:`~earmark.detect.base.Detector` protocol and the
registry; :mod:`earmark.detect.residue` the default, training-free detector.
"""
