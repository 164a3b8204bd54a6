# SPDX-License-Identifier: Apache-2.0
"""One module per ``/v1`` resource; each is thin over :mod:`earmark.service`."""
