"""The captioner: vocabulary, BLEU against hand-computed cases, decoding, registry round trip, and training
through petastorm on a tiny lake table."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from images import coloured_image

from lakelens.lake import table_location
from models.bleu import corpus_bleu
from models.captioner import Captioner
from models.captioner_training import CaptionTargets, evaluate_captioner, pretrain_decoder, train_captioner
from models.data import Preprocessing, petastorm_url
from models.registry import Manifest, load_model, save_model
from models.train_loop import TrainSettings
from models.vocabulary import BOS, EOS, PAD, UNK, Vocabulary, tokenize
from stages.training import pretraining_captions

TINY = {"widths": [8, 16], "grid": 2, "embed_dim": 16, "hidden": 32}
COLOUR_CAPTIONS = ["a red noisy square", "a green noisy square", "a blue noisy square"]  # tests/images COLOURS


def words(text: str) -> list[str]:
    return text.split()


def test_tokenize_keeps_lower_case_words_and_numbers() -> None:
    assert tokenize("A man's 2 horses, on a BEACH!") == ["a", "mans", "2", "horses", "on", "a", "beach"]


def test_vocabulary_is_sorted_after_the_specials_and_round_trips() -> None:
    vocab = Vocabulary.build(["A red circle.", "a blue circle left of a red star"], min_count=2)
    assert vocab.words == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "circle", "red"]
    ids = vocab.encode("a red star", max_length=4)
    assert ids == [BOS, 4, 6, UNK, EOS, PAD] and len(ids) == 4 + 2
    assert vocab.decode(ids) == "a red <unk>"
    assert vocab.encode("a a a a a a", max_length=2) == [BOS, 4, 4, EOS]
    assert Vocabulary(vocab.words).encode("a red circle", 3) == vocab.encode("a red circle", 3)


def test_vocabulary_refuses_a_word_list_without_the_specials() -> None:
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", "b"])


def test_bleu_of_identical_captions_is_one() -> None:
    caption = words("a small red circle left of a large blue square")
    assert corpus_bleu([[caption]], [caption]) == 1.0


def test_bleu_without_any_four_gram_match_is_zero() -> None:
    assert corpus_bleu([[words("a red circle left of a blue star")]], [words("a red circle above a blue star")]) == 0


def test_bleu_precisions_by_hand() -> None:
    # 1-grams 4/5, 2-grams 3/4, 3-grams 2/3, 4-grams 1/2; equal lengths, so no brevity penalty.
    score = corpus_bleu([[words("a b c d f")]], [words("a b c d e")])
    assert score == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_bleu_brevity_penalty() -> None:
    reference = words("a red circle left of a blue square above a green star")
    hypothesis = reference[:8]  # every n-gram matches, but 8 words for 12
    assert corpus_bleu([[reference]], [hypothesis]) == pytest.approx(math.exp(1 - 12 / 8))


def test_bleu_clips_counts_by_the_best_reference_and_sums_over_the_corpus() -> None:
    references = [[words("the cat is on the mat"), words("there is a cat on the mat")]]
    assert corpus_bleu(references, [words("the the the the the the the")], n=1) == pytest.approx(2 / 7)
    # Corpus precision 3/6, not the mean 0.625 of the sentence precisions 2/2 and 1/4.
    assert corpus_bleu([[words("a b")], [words("c x y z")]], [words("a b"), words("c d e f")], n=1) == 0.5


def test_bleu_brevity_uses_the_closest_reference_length_the_shorter_on_ties() -> None:
    references = [[words("a b c d"), words("a b c d e f")]]
    assert corpus_bleu(references, [words("a b c d e")]) == 1.0


def tiny_model(vocab_size: int = 9, seed: int = 0) -> Captioner:
    torch.manual_seed(seed)
    model = Captioner(vocab_size, **TINY)
    model(torch.randn(4, 3, 16, 16), torch.randint(0, vocab_size, (4, 5)))  # batch-norm statistics move
    return model.eval()


def test_forward_and_decoding_shapes() -> None:
    model = tiny_model()
    images, tokens = torch.randn(3, 3, 16, 16), torch.randint(0, 9, (3, 7))
    logits = model(images, tokens)["logits"]
    assert logits.shape == (3, 7, 9) and logits.dtype == torch.float32
    for ids, scores in (model.greedy(images, max_length=5), model.beam_search(images, beam_size=2, max_length=5)):
        assert ids.dtype == torch.int64 and ids.shape[0] == 3 and 1 <= ids.shape[1] <= 5
        assert scores.shape == (3,) and scores.dtype == torch.float32 and (scores <= 0).all()
        assert not (ids == BOS).any()


def test_one_blank_encoded_and_broadcast_trains_as_a_batch_of_blanks() -> None:
    # What text pretraining does: the same loss and gradients as the whole batch of blanks through the encoder.
    torch.manual_seed(0)
    model = Captioner(9, dropout=0.0, **TINY).train()
    blank, tokens = torch.zeros(1, 3, 16, 16), torch.randint(4, 9, (5, 6))
    losses, grads = [], []
    for state in (model.start(blank.expand(5, -1, -1, -1)), None):
        if state is None:
            state = tuple(s.expand(5, *s.shape[1:]) for s in model.start(blank))
        model.zero_grad()
        loss = model.loss(model.decode(state, tokens)["logits"], tokens)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(losses[0], losses[1])
    assert len(grads[0]) == len(grads[1]) > 0
    for whole, broadcast in zip(*grads, strict=True):
        torch.testing.assert_close(whole, broadcast, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_decoding_stops_at_the_length_limit(decode: str) -> None:
    model = tiny_model()
    with torch.no_grad():
        model.out.bias[EOS] = -1e4  # never ends by itself
    images = torch.randn(2, 3, 16, 16)
    ids, _ = model.greedy(images, max_length=6) if decode == "greedy" else model.beam_search(images, 3, max_length=6)
    assert ids.shape == (2, 6) and not ((ids == EOS) | (ids == PAD)).any()


def test_decoding_pads_after_the_end() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.out.bias[EOS] = 1e4  # ends at once
    ids, scores = model.greedy(torch.randn(2, 3, 16, 16), max_length=6)
    assert ids.tolist() == [[EOS], [EOS]] and torch.allclose(scores, torch.zeros(2), atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_greedy(seed: int) -> None:
    model = tiny_model(seed=seed)
    images = torch.randn(5, 3, 16, 16)
    greedy_ids, greedy_scores = model.greedy(images, max_length=8)
    beam_ids, beam_scores = model.beam_search(images, beam_size=1, max_length=8)
    assert torch.equal(beam_ids, greedy_ids) and torch.allclose(beam_scores, greedy_scores)


def test_wider_beam_finds_captions_at_least_as_likely_as_greedy_on_average() -> None:
    model = tiny_model(seed=3)
    images = torch.randn(16, 3, 16, 16)
    assert model.beam_search(images, 4, 8)[1].mean() >= model.greedy(images, 8)[1].mean() - 1e-6


def test_loss_goes_down_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = Captioner(9, **TINY)
    images = torch.randn(8, 3, 16, 16)
    tokens = torch.tensor([[BOS, 4 + i % 5, 4 + (i * 3) % 5, EOS, PAD] for i in range(8)])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(model(images, tokens)["logits"], tokens)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_registry_round_trip_gives_the_same_captions(tmp_path: Path) -> None:
    model = tiny_model()
    args = {"vocab_size": 9, "in_channels": 3, **TINY}
    save_model(model, Manifest.new("cap", "captioner", args, vocabulary=[str(i) for i in range(9)]), tmp_path)
    loaded, manifest = load_model(tmp_path, "cap")
    images = torch.randn(4, 3, 16, 16)
    assert torch.equal(loaded.greedy(images, 6)[0], model.greedy(images, 6)[0])
    assert torch.equal(loaded.beam_search(images, 3, 6)[0], model.beam_search(images, 3, 6)[0])
    assert len(manifest.vocabulary) == 9


def test_caption_targets_are_fixed_length_token_rows() -> None:
    vocab = Vocabulary.build(COLOUR_CAPTIONS)
    targets = CaptionTargets(tuple(vocab.words), max_length=5)
    assert targets.fields()[0][2] == (7,)
    (row,) = targets.decode(pd.DataFrame({"caption": ["A red square."]}))["tokens"]
    assert row.dtype == "int64" and vocab.decode(row) == "a red square" and row[0] == BOS


@pytest.fixture
def caption_table(spark, cfg) -> str:
    rows = pd.DataFrame(
        {
            "image_id": [f"id{i}" for i in range(48)],
            "bytes": [coloured_image(i % 3, i) for i in range(48)],
            "caption": [COLOUR_CAPTIONS[i % 3] for i in range(48)],
        }
    )
    name = f"{cfg.lake.database}.captions_tiny"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.createDataFrame(rows).repartition(3).write.saveAsTable(name)
    return petastorm_url(table_location(spark, name))


def test_training_round_trip_through_petastorm_learns_the_captions(caption_table: str) -> None:
    vocab = Vocabulary.build(COLOUR_CAPTIONS)
    model = Captioner(len(vocab), **TINY)
    prep = Preprocessing(size=16)
    history = train_captioner(
        model, caption_table, prep, TrainSettings(epochs=8, batch_size=16, lr=1e-2), torch.device("cpu"), vocab
    )
    assert len(history) == 8 and all(h["rows"] == 48 for h in history)
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    scores = evaluate_captioner(model, caption_table, prep, torch.device("cpu"), vocab)
    assert scores == {"bleu4_greedy": 1.0, "bleu4_beam": 1.0, "rows": 48.0}


def test_training_refuses_a_vocabulary_of_another_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size=len"):
        train_captioner(
            Captioner(5, **TINY), tmp_path.as_uri(), Preprocessing(16), TrainSettings(epochs=1), torch.device("cpu"),
            Vocabulary.build(COLOUR_CAPTIONS),
        )  # fmt: skip


def test_text_pretraining_teaches_the_decoder_its_language_on_a_blank_image() -> None:
    captions = ["a red circle on grass"] * 30 + ["a blue square"] * 10
    vocabulary = Vocabulary.build(captions)
    model = tiny_model(len(vocabulary))
    prep = Preprocessing(16)
    settings = TrainSettings(epochs=25, batch_size=8, lr=1e-2)
    history = pretrain_decoder(model, captions, prep, settings, torch.device("cpu"), vocabulary)
    assert history[-1]["loss"] < history[0]["loss"] / 3 and history[-1]["rows"] == 40
    ids, _ = model.eval().greedy(torch.zeros(1, 3, 16, 16))
    assert vocabulary.decode(ids[0].tolist()) == "a red circle on grass"  # the commoner caption


def test_pretraining_text_leaves_out_every_caption_it_is_scored_against(tmp_path: Path) -> None:
    file = tmp_path / "captions.txt"
    file.write_text("A dog runs.\n\na cat sleeps\nTwo birds\n")
    parts = {"train": ["a dog runs"], "holdout": ["Two birds!"], "eval": ["a cat  sleeps."]}
    assert pretraining_captions(str(file), parts) == ["A dog runs."]
    assert pretraining_captions(None, parts) == []
