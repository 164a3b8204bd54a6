# SPDX-License-Identifier: Apache-2.0
"""Evaluation harnesses: ``earmark bench identify`` and friends. Benchmarks, not tests."""
