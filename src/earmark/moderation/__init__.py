# SPDX-License-Identifier: Apache-2.0
"""Moderation: policies and decisions, reviews, disputes, DSA statements, the audit chain."""
