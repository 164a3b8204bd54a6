# SPDX-License-Identifier: Apache-2.0
"""Audio in: decoding, resampling, test signals and the edits used in evaluation."""
