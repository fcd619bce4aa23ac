"""annotate.precision: bfloat16 on a CPU reaches the predictor from the configuration and gives float32 outputs close
to float32's, with a real bundled model on tiny images made here."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SCENES
from images import coloured_image, encode, rgb

from lakelens.config import ConfigError, load_config
from models.registry import BUNDLED, load_model
from stages.annotate import model_spec
from udfs.embed import EmbedPredictor
from udfs.factory import make_model_udf

# Random pixels and flat colours, at sizes other than the models' own.
BLOBS = [encode(rgb(48, 40, seed=seed), "PNG") for seed in range(3)] + [coloured_image(k, seed=1) for k in range(3)]
# model_spec broadcasts the weights; without Spark the "broadcast" is the bytes themselves.
NO_SPARK = SimpleNamespace(sparkContext=SimpleNamespace(broadcast=lambda weights: weights))


def annotated(task: str, precision: str) -> pd.DataFrame:
    """The rows the UDF gives for BLOBS with ``task``'s scene model, configured with ``annotate.precision``."""
    cfg = load_config(SCENES, [f"models.registry={BUNDLED}", f"annotate.precision={precision}"])
    spec = model_spec(cfg, task, NO_SPARK)
    assert spec.precision == precision
    frame = pd.DataFrame({"image_id": [f"id{i}" for i in range(len(BLOBS))], "bytes": BLOBS, "error": None})
    out = pd.concat(make_model_udf(spec)(iter([frame])), ignore_index=True)
    assert out["error"].isna().all()
    return out


def test_bfloat16_vectors_are_float32_unit_vectors_close_to_float32_s() -> None:
    full, half = (np.stack(annotated("embed", p)["vector"]) for p in ("float32", "bfloat16"))
    assert half.dtype == np.float32 and np.allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-6)
    # bfloat16 keeps 8 bits of mantissa (about 0.4 % per step): every element within 0.01 of float32's, and each
    # vector's cosine with float32's at least 0.999 (measured: 0.0034 and 0.99996).
    assert np.abs(half - full).max() < 0.01
    assert (half * full).sum(axis=1).min() > 0.999
    assert not np.array_equal(half, full)  # bfloat16 did run: the setting reached the predictor


def test_bfloat16_scores_are_floats_close_to_float32_s() -> None:
    full, half = (annotated("classify", p) for p in ("float32", "bfloat16"))
    assert all(isinstance(s, float) for s in half["score"])
    # The classifier's sigmoid scores within 0.01 of float32's (measured: 0.0017), best first as ever.
    assert np.abs(half["score"] - full["score"]).max() < 0.01
    for labels in half["labels"]:
        scores = [item["score"] for item in labels]
        assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)


def test_a_precision_other_than_float32_or_bfloat16_is_refused() -> None:
    with pytest.raises(ConfigError, match="config key 'annotate.precision' must be one of float32, bfloat16"):
        load_config(overrides=["annotate.precision=float16"])
    model, manifest = load_model(BUNDLED, "embedder")
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, got 'half'"):
        EmbedPredictor(model, manifest, torch.device("cpu"), precision="half")
