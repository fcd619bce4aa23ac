"""The bundled default models (models/default): they load, say how they were made, and work on new scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lakelens.scenes import SCENE_MASK_CLASSES, generate_scenes
from models.bleu import corpus_bleu
from models.colour import annealed_mean, colourfulness, lab_to_rgb, psnr, rgb_to_lab
from models.data import Preprocessing, to_tensor_array
from models.detection_metrics import mean_average_precision
from models.masks import confusion_matrix, decode_mask, mean_iou
from models.registry import BUNDLED, load_model, model_names
from models.text_image import query_vectors
from models.vocabulary import Vocabulary, tokenize

KINDS = ["captioner", "classifier", "detector", "embedder", "segmenter"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """24 scenes of a seed no default was trained on."""
    folder = tmp_path_factory.mktemp("fresh-scenes")
    generate_scenes(folder, n=24, seed=77, workers=1)
    return folder, pd.read_parquet(folder / "ground_truth.parquet")


def load(name: str, scenes: tuple[Path, pd.DataFrame]) -> tuple[torch.nn.Module, object, torch.Tensor]:
    """The bundled model, its manifest, and the scenes preprocessed as its manifest says."""
    model, manifest = load_model(BUNDLED, name)
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    folder, truth = scenes
    pixels = np.stack([to_tensor_array((folder / f).read_bytes(), prep) for f in truth.file])
    return model, manifest, torch.from_numpy(pixels)


def test_every_default_is_there_small_and_made_by_a_recorded_command() -> None:
    # The five kinds, the search task's model, and the image-to-image tasks' models.
    assert model_names(BUNDLED) == sorted([*KINDS, "text-image", "colouriser", "autoencoder"])
    assert sum(f.stat().st_size for f in BUNDLED.rglob("*") if f.is_file()) < 20 * 2**20
    for name in KINDS:
        _, manifest = load_model(BUNDLED, name)  # the weights match their recorded SHA-256 and architecture
        assert manifest.architecture == name and manifest.command.startswith("python -m jobs.train")
        # The embedder learns from relayout-rich scenes (20,000 of seed 5); the others from the 10,000 of seed 0.
        assert manifest.training["rows_train"] == (17919 if name == "embedder" else 9001)
        assert manifest.training["table"].endswith("scene_truth")


def test_the_classifier_names_the_shapes_of_new_scenes(scenes) -> None:
    model, manifest, pixels = load("classifier", scenes)
    with torch.no_grad():
        predicted = model(pixels)["scores"] > 0.5
    truth = torch.zeros_like(predicted)
    for i, labels in enumerate(scenes[1].labels):
        truth[i, [manifest.classes.index(name) for name in labels]] = True
    f1 = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert f1 >= 0.85


def test_the_detector_finds_the_objects_of_new_scenes(scenes) -> None:
    model, manifest, pixels = load("detector", scenes)
    found = model.detect(pixels, score_threshold=0.05)
    truths = [
        {
            "boxes": torch.tensor([[b["x0"] / 128, b["y0"] / 128, b["w"] / 128, b["h"] / 128] for b in boxes]),
            "labels": torch.tensor([manifest.classes.index(name) for name in labels]),
        }
        for boxes, labels in zip(scenes[1].boxes, scenes[1].labels, strict=True)
    ]
    assert mean_average_precision(found, truths, len(manifest.classes))["map"] >= 0.8


def test_the_segmenter_masks_new_scenes(scenes) -> None:
    model, manifest, pixels = load("segmenter", scenes)
    assert manifest.classes == list(SCENE_MASK_CLASSES)
    size = manifest.preprocessing["size"]
    truth = torch.from_numpy(np.stack([decode_mask(m, size) for m in scenes[1]["mask"]]))
    with torch.no_grad():
        predicted = model.predict_masks(pixels)
    assert mean_iou(confusion_matrix(predicted, truth, len(manifest.classes))) >= 0.85


def test_the_captioner_describes_new_scenes(scenes) -> None:
    model, manifest, pixels = load("captioner", scenes)
    vocabulary = Vocabulary(manifest.vocabulary)
    ids, scores = model.beam_search(pixels, 3)
    captions = [vocabulary.decode(row).split() for row in ids.tolist()]
    references = [[tokenize(caption)] for caption in scenes[1].caption]
    assert corpus_bleu(references, captions) >= 0.6 and bool((scores <= 0).all())


def test_the_embedder_puts_near_duplicates_first(scenes) -> None:
    model, _, pixels = load("embedder", scenes)
    with torch.no_grad():
        vectors = model(pixels)["vectors"]
    similarity = vectors @ vectors.T
    similarity.fill_diagonal_(float("-inf"))
    nearest = similarity.argmax(dim=1).tolist()
    groups = scenes[1].dup_group.tolist()
    queries = [i for i, g in enumerate(groups) if not pd.isna(g)]
    assert queries and all(groups[nearest[i]] == groups[i] for i in queries)


def test_the_text_image_model_finds_new_scenes_by_their_captions(scenes) -> None:
    model, manifest, pixels = load("text-image", scenes)
    assert manifest.architecture == "text_image" and manifest.command.startswith("python -m jobs.train")
    assert manifest.training["image_model"] == "embedder v2" and manifest.training["negatives"] == "hardest"
    truth = scenes[1]
    keys = [tuple(sorted(zip(*objects, strict=True))) for objects in zip(truth.labels, truth.colours, truth.sizes,
                                                                          strict=True)]  # fmt: skip
    with torch.no_grad():
        images = model(pixels)["vectors"]
    queries = query_vectors(model, list(truth.caption), Vocabulary(manifest.vocabulary))
    best = (queries @ images.T).topk(3, dim=1).indices
    # A hit: one of a caption's three best scenes has its objects (its own scene, or one with the same objects).
    hits = [any(keys[j] == keys[i] for j in row) for i, row in enumerate(best.tolist())]
    assert sum(hits) / len(hits) >= 0.9


def test_the_colouriser_colours_new_scenes_turned_grey_better_than_grey(scenes) -> None:
    model, manifest, _ = load("colouriser", scenes)
    assert manifest.architecture == "colouriser_residual" and manifest.command.startswith("python -m jobs.train")
    folder, truth = scenes
    side = Preprocessing.from_manifest(manifest.preprocessing).size
    unit = Preprocessing(side, 3, (0.0,) * 3, (1.0,) * 3)  # RGB in [0, 1]
    rgb = torch.from_numpy(np.stack([to_tensor_array((folder / f).read_bytes(), unit) for f in truth.file]))
    lab = rgb_to_lab(rgb)
    with torch.no_grad():
        chroma = annealed_mean(model(lab[:, :1]))
    coloured = lab_to_rgb(torch.cat([lab[:, :1], chroma], dim=1))
    grey = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(chroma)], dim=1))
    assert psnr(coloured, rgb).mean() > psnr(grey, rgb).mean() + 1  # dB above the grey floor
    assert colourfulness(coloured).mean() > 0.5 * colourfulness(rgb).mean()


def test_the_autoencoder_gives_new_scenes_back_and_noise_worst(scenes) -> None:
    model, manifest, pixels = load("autoencoder", scenes)
    assert manifest.architecture == "autoencoder" and manifest.arch_args["code_dim"] == 64
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    noise = (torch.rand(8, 3, prep.size, prep.size, generator=torch.Generator().manual_seed(0)) - 0.5) / 0.25
    with torch.no_grad():
        errors = [
            ((model(x)["reconstruction"] - x) * prep.std[0]).pow(2).flatten(1).mean(dim=1) for x in (pixels, noise)
        ]
    scene_psnr = (10 * torch.log10(1 / errors[0])).mean()
    assert scene_psnr > 20  # dB, pixels in [0, 1]
    assert errors[0].max() < errors[1].min()  # every frame of noise is less like a scene than any scene
