"""The pretrained photo models as registry models: installed by name, refused nothing by registration's checks, and
run by the annotate stage over real photos for both classify and embed."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_folder
from pyspark.sql import functions as F
from test_pretrained import PHOTOS

from lakelens.config import Config, ModelsConfig
from lakelens.lake import read_table
from lakelens.schemas import EMBEDDINGS, IMAGES, LABELS
from models.pretrained import REGISTRY_MODELS, install_pretrained, load_pretrained
from models.registry import check_manifest, check_runs, load_model
from stages.annotate import annotate
from stages.index import index_similar
from stages.ingest import ingest

MODEL = "mobilenet-v2-imagenet"


def test_installed_photo_models_pass_registration_s_checks_and_keep_their_outputs(tmp_path: Path) -> None:
    made = install_pretrained(tmp_path)
    assert sorted(m.name for m in made) == sorted(REGISTRY_MODELS)
    assert install_pretrained(tmp_path) == []  # a model of that name is kept
    for entry in made:
        model, manifest = load_model(tmp_path, entry.name)
        check_manifest(manifest)
        check_runs(model, manifest)
        assert len(manifest.classes) == 1000 and manifest.preprocessing["size"] == 224
        assert (tmp_path / entry.name / entry.version / "weights.safetensors").is_file()
        images = torch.rand(2, 3, 224, 224)
        with torch.inference_mode():
            ours, theirs = model(images), load_pretrained(entry.architecture)(images)
        assert torch.equal(ours["logits"], theirs["logits"])
        assert torch.allclose(ours["vectors"].norm(dim=1), torch.ones(2))


@pytest.mark.shared_data
def test_annotate_labels_and_embeds_real_photos_with_a_photo_model(spark, cfg: Config, tmp_path: Path) -> None:
    folder = shared_folder("coco128", "images")
    for path in PHOTOS:
        (tmp_path / "photos").mkdir(exist_ok=True)
        shutil.copy(folder / path, tmp_path / "photos" / Path(path).name)
    install_pretrained(tmp_path / "models", [MODEL])
    models = {**cfg.annotate.models, "classify": MODEL, "embed": MODEL}
    annotate_cfg = dataclasses.replace(cfg.annotate, tasks=("classify", "embed"), models=models)
    photos = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "models")), annotate=annotate_cfg)
    ingest(spark, photos, str(tmp_path / "photos"), ingest_date=date(2026, 1, 2))
    counts = annotate(spark, photos, photos.annotate.tasks)
    assert [(c.task, c.model, c.good, c.errors) for c in counts.tasks] == [
        ("classify", MODEL, 6, 0), ("embed", MODEL, 6, 0),
    ]  # fmt: skip
    names = read_table(spark, photos, IMAGES).select("image_id", F.element_at(F.split("uri", "/"), -1).alias("file"))
    labelled = {r.file: r.label for r in read_table(spark, photos, LABELS).join(names, "image_id").collect()}
    assert labelled == {Path(p).name: name for p, name in PHOTOS.items()}
    vectors = np.stack([r.vector for r in read_table(spark, photos, EMBEDDINGS).collect()])
    assert vectors.shape == (6, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similar = index_similar(spark, photos)
    assert (similar.indexed, similar.params_id.startswith("exact")) == (6, True)
