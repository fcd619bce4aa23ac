"""The text-image space without Spark: its towers, the ranking loss and its negatives by hand, training through
petastorm on a tiny Parquet snapshot, and the registry round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from images import coloured_image

from lakelens.errors import InputError
from models.data import Preprocessing, to_tensor_array
from models.registry import Manifest, RegistryError, load_model, save_model
from models.search_losses import hardest_negatives, hinge_loss, match_matrix, mined_negatives, random_negatives
from models.text_image import TextImage, WordTower, image_tower_start, query_vectors, text_input
from models.text_image_training import (
    PairTargets,
    SearchSettings,
    caption_key,
    evaluate_text_image,
    frozen_features,
    load_pairs,
    train_text_image,
)
from models.train_loop import TrainSettings
from models.vocabulary import Vocabulary
from stages.training import make_model

CAPTIONS = ["a red noisy square", "a green noisy square", "a blue noisy square"]  # tests/images COLOURS
TINY = {"dim": 16, "widths": (8, 16), "text_width": 16}


def tiny_model(vocabulary: Vocabulary, seed: int = 0) -> TextImage:
    torch.manual_seed(seed)
    return TextImage(vocab_size=len(vocabulary), **TINY)


def test_towers_give_unit_vectors_of_the_space_s_length() -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    model = tiny_model(vocabulary).eval()
    images = model(torch.rand(5, 3, 16, 16))["vectors"]
    texts = model.text_vectors(text_input(["a red square", "blue"], "words", vocabulary))
    assert images.shape == (5, 16) and texts.shape == (2, 16)
    assert torch.allclose(images.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(texts.norm(dim=1), torch.ones(2), atol=1e-5)


def test_the_words_tower_ignores_padding() -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    tower = WordTower(len(vocabulary), 8, 8).eval()
    short = torch.tensor([vocabulary.encode("a red noisy square", 4)])
    padded = torch.tensor([vocabulary.encode("a red noisy square", 12)])
    assert short.shape[1] < padded.shape[1]
    assert torch.allclose(tower(short), tower(padded), atol=1e-6)


def test_a_query_without_words_is_refused_with_what_to_give() -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    for query in ["", "   ", "?!"]:
        with pytest.raises(InputError, match="has no words"):
            query_vectors(tiny_model(vocabulary), [query], vocabulary)


def test_a_query_of_unknown_words_still_has_a_vector() -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    vectors = query_vectors(tiny_model(vocabulary), ["a purple elephant"], vocabulary)
    assert vectors.shape == (1, 16) and torch.isfinite(vectors).all()


def test_match_matrix_joins_same_image_or_same_caption() -> None:
    match = match_matrix(torch.tensor([1, 2]), torch.tensor([10, 20]), torch.tensor([1, 3, 4]),
                         torch.tensor([30, 20, 40]))  # fmt: skip
    assert match.tolist() == [[True, False, False], [False, True, False]]


def test_hinge_loss_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    good = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    bad = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # row 1: max(0, 0.2 - 1 + 0) = 0; row 2: max(0, 0.2 - 0 + 1) = 1.2
    assert hinge_loss(q, good, bad, 0.2).item() == pytest.approx(0.6)


def test_negatives_never_match_and_the_hard_ones_rank_highest() -> None:
    similarity = torch.tensor([[0.9, 0.5, 0.8, 0.1], [0.2, 0.3, 0.4, 0.7], [0.1, 0.2, 0.3, 0.4]])
    match = torch.tensor([[True, False, False, False], [False, False, False, True], [True, True, True, True]])
    assert hardest_negatives(similarity, match).tolist() == [2, 2, -1]
    assert mined_negatives(similarity, match, 2).tolist() == [[2, 1], [2, 1], [-1, -1]]
    drawn = torch.stack([random_negatives(match, torch.Generator().manual_seed(s)) for s in range(50)])
    assert drawn[:, 2].eq(-1).all()
    assert not match[0, drawn[:, 0]].any() and not match[1, drawn[:, 1]].any()
    assert set(drawn[:, 0].tolist()) == {1, 2, 3}  # uniformly among the non-matches


def test_search_settings_refuse_unknown_negatives_and_bad_margins() -> None:
    with pytest.raises(ValueError, match="negatives must be one of"):
        SearchSettings(negatives="semi")
    with pytest.raises(ValueError, match="margin"):
        SearchSettings(margin=0)


@pytest.fixture
def pairs_url(tmp_path: Path) -> str:
    rows = pd.DataFrame(
        {
            "image_id": [f"id{i}" for i in range(48)],
            "bytes": [coloured_image(i % 3, i) for i in range(48)],
            "caption": [CAPTIONS[i % 3] for i in range(48)],
        }
    )
    for part in range(3):
        pq.write_table(pa.Table.from_pandas(rows.iloc[part::3], preserve_index=False), tmp_path / f"p{part}.parquet")
    return tmp_path.as_uri()


def test_pairs_load_once_with_their_keys(pairs_url: str) -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    pairs = load_pairs(pairs_url, Preprocessing(16), PairTargets("words", tuple(vocabulary.words)))
    assert len(pairs) == 48 and pairs.pixels.shape == (48, 3, 16, 16) and pairs.pixels.dtype == torch.float16
    assert pairs.image_keys.unique().numel() == 48
    assert sorted(pairs.text_keys.unique().tolist()) == sorted({caption_key(c) for c in CAPTIONS})
    assert caption_key("A red, noisy square!") == caption_key("a red noisy square")


@pytest.mark.parametrize("negatives", ["random", "hardest", "mined"])
def test_training_puts_each_caption_nearest_its_images(pairs_url: str, negatives: str) -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    targets = PairTargets("words", tuple(vocabulary.words))
    model, prep = tiny_model(vocabulary), Preprocessing(16)
    before = evaluate_text_image(model, pairs_url, prep, torch.device("cpu"), targets)
    history = train_text_image(
        model, pairs_url, prep, TrainSettings(epochs=6, batch_size=12, lr=1e-2), torch.device("cpu"), targets,
        SearchSettings(negatives=negatives, warmup_epochs=2, mine_top=5),
    )  # fmt: skip
    assert len(history) == 6 and all(h["rows"] == 48 for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    after = evaluate_text_image(model, pairs_url, prep, torch.device("cpu"), targets)
    assert after["queries"] == 3 and after["images"] == 48
    assert after["recall_at_1"] == 1.0 and before["recall_at_1"] < 1.0


def test_registry_round_trip_gives_the_same_vectors(tmp_path: Path) -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    model = tiny_model(vocabulary).eval()
    arch_args = {"vocab_size": len(vocabulary), **TINY}
    manifest = Manifest.new("search", "text_image", arch_args, vocabulary=vocabulary.words,
                            preprocessing=Preprocessing(16).to_manifest())  # fmt: skip
    save_model(model, manifest, tmp_path)
    same, loaded = load_model(tmp_path, "search")
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(same(images)["vectors"], model(images)["vectors"])
    assert torch.equal(
        query_vectors(same, ["a red square"], Vocabulary(loaded.vocabulary)),
        query_vectors(model, ["a red square"], vocabulary),
    )


def test_the_sentence_tower_learns_a_projection_of_frozen_sentence_vectors(pairs_url: str) -> None:
    targets = PairTargets("sentence")
    torch.manual_seed(0)
    model, prep = TextImage(text_tower="sentence", **TINY), Preprocessing(16)
    assert not any(name.startswith("text.") and "encoder" in name for name in model.state_dict())
    train_text_image(
        model, pairs_url, prep, TrainSettings(epochs=6, batch_size=12, lr=1e-2), torch.device("cpu"), targets,
        SearchSettings(negatives="hardest", warmup_epochs=1),
    )  # fmt: skip
    assert evaluate_text_image(model, pairs_url, prep, torch.device("cpu"), targets)["recall_at_1"] == 1.0
    # Free text: sentences the training captions never were still land near the right colour.
    queries = query_vectors(model, ["the colour red", "something green", "is it blue?"], None)
    pixels = torch.from_numpy(np.stack([to_tensor_array(coloured_image(c, 99), prep) for c in range(3)]))
    with torch.no_grad():
        images = model.eval()(pixels)["vectors"]
    assert (queries @ images.T).argmax(dim=1).tolist() == [0, 1, 2]


def test_a_frozen_image_tower_s_maps_are_made_once_and_give_the_same_vectors(pairs_url: str) -> None:
    vocabulary = Vocabulary.build(CAPTIONS)
    model = tiny_model(vocabulary)
    pairs = load_pairs(pairs_url, Preprocessing(16), PairTargets("words", tuple(vocabulary.words)))
    assert frozen_features(model, pairs, torch.device("cpu")).features is None  # its layers train: nothing made
    model.image.features.requires_grad_(False)
    frozen = frozen_features(model, pairs, torch.device("cpu"))
    assert frozen.features is not None and len(frozen.features) == 48
    rows = torch.tensor([0, 5, 47])
    with torch.no_grad():
        model.eval()
        assert torch.allclose(frozen.image_vectors(model, rows, torch.device("cpu")),
                              pairs.image_vectors(model, rows, torch.device("cpu")), atol=1e-2)  # fmt: skip


def test_the_image_tower_starts_from_a_registered_embedder_and_refuses_other_models(tmp_path: Path) -> None:
    start = image_tower_start(tmp_path, "embedder")  # the bundled scene embedder, installed where missing
    assert start.ref == "embedder v2" and start.arch_args == {"dim": 64, "in_channels": 3}
    assert start.preprocessing.size == 64
    vocabulary = Vocabulary.build(CAPTIONS)
    model, arch_args = make_model("text_image", [], False, 3, 16, vocabulary, image_start=start)
    assert arch_args["dim"] == 64 and arch_args["vocab_size"] == len(vocabulary)  # the embedder's length wins
    embedder, _ = load_model(tmp_path, "embedder")
    assert all(torch.equal(v, embedder.state_dict()[k]) for k, v in model.image.state_dict().items())
    with pytest.raises(RegistryError, match="is a classifier, not an embedder"):
        image_tower_start(tmp_path, "classifier")
