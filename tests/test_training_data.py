"""A training round trip through petastorm on a tiny lake table: Spark writes it, petastorm feeds torch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from images import coloured_image, encode
from PIL import Image

from lakelens.lake import table_location
from models.classifier import Classifier
from models.data import Preprocessing, petastorm_url, table_loader, to_tensor_array


@pytest.fixture
def tiny_table(spark, cfg) -> str:
    rows = pd.DataFrame(
        {
            "image_id": [f"id{i}" for i in range(48)],
            "bytes": [coloured_image(i % 3, i) for i in range(48)],
            "label": [i % 3 for i in range(48)],
        }
    )
    name = f"{cfg.lake.database}.train_tiny"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.createDataFrame(rows).repartition(3).write.saveAsTable(name)
    return petastorm_url(table_location(spark, name))


def test_to_tensor_array_shapes_and_normalisation() -> None:
    prep = Preprocessing(size=8, channels=1, mean=(0.5,), std=(0.5,))
    white = encode(Image.new("RGB", (30, 20), (255, 255, 255)), "PNG")
    array = to_tensor_array(white, prep)
    assert array.shape == (1, 8, 8) and array.dtype == np.float32
    assert np.allclose(array, 1.0)  # (1 - 0.5) / 0.5


def test_batches_from_a_lake_table(tiny_table: str) -> None:
    prep = Preprocessing(size=16)
    with table_loader(tiny_table, prep, batch_size=8, shuffle=False) as loader:
        batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == 48
    first = batches[0]
    assert first["pixels"].shape == (8, 3, 16, 16) and first["pixels"].dtype == torch.float32
    assert first["label"].dtype == torch.int64
    assert sorted(torch.cat([b["label"] for b in batches]).tolist()) == sorted([i % 3 for i in range(48)])


def test_training_round_trip_learns_the_colours(tiny_table: str) -> None:
    torch.manual_seed(0)
    prep = Preprocessing(size=16)
    model = Classifier(num_classes=3, widths=(8, 16))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    with table_loader(tiny_table, prep, batch_size=16, num_epochs=8, seed=1) as loader:
        for batch in loader:
            loss = model.loss(model(batch["pixels"])["logits"], batch["label"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    assert len(losses) == 8 * 3 and np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    model.eval()
    with table_loader(tiny_table, prep, batch_size=48, shuffle=False) as loader, torch.no_grad():
        batch = next(iter(loader))
        accuracy = (model(batch["pixels"])["logits"].argmax(1) == batch["label"]).float().mean().item()
    assert accuracy == 1.0
