"""The ``error`` values of annotation rows: those that say the model failed on an image (its bug, a lack of memory,
a preprocessing it cannot do), as against those that say the image cannot be annotated (an ingest error, bytes
that do not decode). An image's own error is its row for good; a model's is not written, and the image is
annotated again on the next run."""

from __future__ import annotations

MODEL_FAILED = "model failed"
OUT_OF_MEMORY = "out of memory"
PREPROCESSING_FAILED = "preprocessing failed"
MODEL_ERRORS = (MODEL_FAILED, OUT_OF_MEMORY, PREPROCESSING_FAILED)
# A model's error is "<kind>: <why>"; this matches them in SQL (rlike) and in Python (re).
MODEL_ERROR_PATTERN = "^(" + "|".join(MODEL_ERRORS) + "):"
