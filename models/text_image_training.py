"""Training and evaluation of the text-image space (``models.text_image``) on a petastorm snapshot of (image,
caption) rows (``bytes``, ``caption``, ``image_id``); Spark-free.

The snapshot is read through petastorm once into memory (pixels as float16, the text tower's input, the keys), then
every epoch draws triples from it (``models.search_losses``): the query is a row's caption, the good image its image,
the bad image chosen by ``negatives``. ``hardest`` and ``mined`` negatives start after ``warmup_epochs`` of random
ones: from the first step they collapse the space (BENCHMARKS.md, "Search by text"). ``mined`` re-makes the index of
every training image with the current model at the start of each epoch and draws a query's bad image among the
``mine_top`` it ranks highest that do not match it; those images go through the image tower with the batch.

Quality is text-to-image recall@k: each distinct caption of the table is a query over its distinct images, a hit an
image of the caption's own row or one with the same caption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.data import Preprocessing, table_loader
from models.search_losses import (
    NEGATIVES,
    hardest_negatives,
    hinge_loss,
    match_matrix,
    mined_negatives,
    random_negatives,
)
from models.text_image import MAX_TEXT_WORDS, SENTENCE_DIM, TextImage, text_input
from models.train_loop import Optimiser, TrainSettings, seed_everything
from models.vocabulary import Vocabulary, tokenize

log = logging.getLogger("lakelens.train")
RECALL_AT = (1, 5, 10)


@dataclass(frozen=True)
class SearchSettings:
    """How triples are made: ``negatives`` (``random``, ``hardest`` or ``mined``), the hinge's ``margin`` (delta),
    the epochs of random negatives before hard ones, how many of a query's highest-ranked non-matches ``mined``
    draws from, and whether hard negatives are semi-hard (ranked below the query's good image; where a query has
    none, a random one)."""

    negatives: str = "hardest"
    margin: float = 0.2
    warmup_epochs: int = 2
    mine_top: int = 10
    semi_hard: bool = True

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, got {self.negatives!r}")
        if not 0 < self.margin <= 2:
            raise ValueError(f"the margin is a cosine gap in (0, 2], got {self.margin}")
        if self.warmup_epochs < 0 or self.mine_top < 1:
            raise ValueError("warmup_epochs must be >= 0 and mine_top >= 1")


def key_of(text: str) -> int:
    """A stable int64 key of ``text`` (56 bits of its BLAKE2b digest)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "big")


def caption_key(caption: str) -> int:
    """The key of a caption's words (case and punctuation do not make two captions differ)."""
    return key_of(" ".join(tokenize(caption or "")))


@dataclass(frozen=True)
class PairTargets:
    """(``caption``, ``image_id``[, ``match_key``]) -> "text" (the text tower's input: token ids int64
    [MAX_TEXT_WORDS + 2], or the sentence vector float32 [384]), "image_key" and "text_key" (int64).

    ``text_key`` says which images answer a caption: by default its words (images with the same caption), or with
    ``match_key`` a key the snapshot holds (``jobs.train --match-expr``): scenes whose objects are the same whatever
    their layout, so that an image tower that pools over positions is not asked to tell "left of" from "above"."""

    text_tower: str
    vocabulary_words: tuple[str, ...] = ()
    match_key: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return ("caption", "image_id", "match_key") if self.match_key else ("caption", "image_id")

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        text = ("text", np.int64, (MAX_TEXT_WORDS + 2,)) if self.text_tower == "words" else (
            "text", np.float32, (SENTENCE_DIM,))  # fmt: skip
        return [text, ("image_key", np.int64, ()), ("text_key", np.int64, ())]

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        vocabulary = Vocabulary(self.vocabulary_words) if self.text_tower == "words" else None
        captions = [c or "" for c in rows["caption"]]
        texts = text_input([c if tokenize(c) else "<unk>" for c in captions], self.text_tower, vocabulary)
        return {
            "text": list(texts.numpy()),
            "image_key": [key_of(i) for i in rows["image_id"]],
            "text_key": list(rows["match_key"].astype(np.int64))
            if self.match_key
            else [caption_key(c) for c in captions],
        }


@dataclass
class Pairs:
    """A snapshot in memory: pixels float16 [N, C, H, W], text inputs [N, ...], image and text keys int64 [N];
    ``features``: where the image tower's layers are frozen, their maps of every row (float16), made once."""

    pixels: torch.Tensor
    text: torch.Tensor
    image_keys: torch.Tensor
    text_keys: torch.Tensor
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.image_keys)

    def image_vectors(self, model: TextImage, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The image tower's vectors float32 [R, dim] of ``rows``: from the frozen layers' maps where made."""
        if self.features is not None:
            return model.image.head(self.features[rows].to(device).float())
        return model(self.pixels[rows].to(device).float())["vectors"]


def frozen_features(model: TextImage, pairs: Pairs, device: torch.device) -> Pairs:
    """``pairs`` with the maps of the image tower's layers (``model.image.features``) when none of them trains (a
    frozen backbone): they are then made once, not every epoch (a photo backbone is most of the work)."""
    if any(p.requires_grad for p in model.image.features.parameters()):
        return pairs
    maps = []
    model.image.features.to(device).eval()
    with torch.no_grad():
        for rows in torch.arange(len(pairs)).split(64):
            maps.append(model.image.features(pairs.pixels[rows].to(device).float()).half().cpu())
    log.info("train: the image tower's layers are frozen: their maps of %d rows made once", len(pairs))
    return dataclasses.replace(pairs, features=torch.cat(maps))


def load_pairs(url: str, prep: Preprocessing, targets: PairTargets, workers: int = 2) -> Pairs:
    """Every row of the snapshot at ``url``, read once through petastorm."""
    parts: dict[str, list[torch.Tensor]] = {"pixels": [], "text": [], "image_key": [], "text_key": []}
    with table_loader(url, prep, 256, targets, shuffle=False, workers=workers) as loader:
        for batch in loader:
            parts["pixels"].append(batch["pixels"].half())
            for name in ("text", "image_key", "text_key"):
                parts[name].append(batch[name])
    if not parts["pixels"]:
        raise ValueError(f"no rows in {url}")
    joined = {name: torch.cat(found) for name, found in parts.items()}
    # Reader threads return row groups in any order: rows sorted by their keys make a seeded run repeatable.
    order = torch.from_numpy(np.lexsort((joined["text_key"].numpy(), joined["image_key"].numpy())))
    return Pairs(*(joined[name][order] for name in ("pixels", "text", "image_key", "text_key")))


def train_text_image(
    model: TextImage, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device,
    targets: PairTargets, search: SearchSettings,
) -> list[dict[str, float]]:  # fmt: skip
    """Train in place on the (image, caption) rows at ``train_url``; AdamW with a cosine schedule over epochs.
    Returns per epoch {loss, active (share of triples with a loss), rows, pairs_per_s}."""
    seed_everything(settings.seed)
    pairs = frozen_features(model, load_pairs(train_url, prep, targets, settings.workers), device)
    log.info("train: %d (image, caption) rows in memory (%.0f MB of pixels)", len(pairs),
             pairs.pixels.numel() * 2 / 1e6)  # fmt: skip
    optimiser = Optimiser(model.to(device), settings, device, clip_norm=1.0)
    generator = torch.Generator().manual_seed(settings.seed)
    history = []
    for epoch in range(settings.epochs):
        mode = search.negatives if epoch >= search.warmup_epochs else "random"
        mined = _mine(model, pairs, device, search.mine_top, search.semi_hard) if mode == "mined" else None
        model.train()
        started, seen, total, active = time.perf_counter(), 0, 0.0, 0.0
        for rows in torch.randperm(len(pairs), generator=generator).split(settings.batch_size):
            if len(rows) < 2:
                continue
            loss, share = _batch_loss(model, pairs, rows, mode, mined, search, device, generator)
            optimiser.step(loss)
            seen += len(rows)
            total += loss.item() * len(rows)
            active += share * len(rows)
        optimiser.end_epoch()
        stats = {"loss": total / max(seen, 1), "active": active / max(seen, 1), "rows": float(seen),
                 "pairs_per_s": seen / (time.perf_counter() - started)}  # fmt: skip
        log.info("train: epoch %d/%d (%s negatives) loss %.4f, %.0f%% of triples active, %.0f pairs/s", epoch + 1,
                 settings.epochs, mode, stats["loss"], 100 * stats["active"], stats["pairs_per_s"])  # fmt: skip
        history.append(stats)
    return history


def _batch_loss(
    model: TextImage, pairs: Pairs, rows: torch.Tensor, mode: str, mined: torch.Tensor | None,
    search: SearchSettings, device: torch.device, generator: torch.Generator,
) -> tuple[torch.Tensor, float]:  # fmt: skip
    """The mean hinge of the batch's triples and the share of them with a loss above zero."""
    query_image, query_text = pairs.image_keys[rows], pairs.text_keys[rows]
    extra = torch.empty(0, dtype=torch.int64)
    if mode == "mined":
        found = mined[rows]
        counts = (found >= 0).sum(dim=1)
        choice = (torch.rand(len(rows), generator=generator) * counts.clamp(min=1)).long()
        extra = found[torch.arange(len(rows)), choice]
        # None mined (semi-hard leaves none): a random row, masked out below if it matches.
        extra = torch.where(counts > 0, extra, torch.randint(len(pairs), (len(rows),), generator=generator))
    images = torch.cat([rows, extra])
    queries = model.text_vectors(pairs.text[rows].to(device))
    vectors = pairs.image_vectors(model, images, device)
    goods = vectors[: len(rows)]
    match = match_matrix(query_image, query_text, pairs.image_keys[images], pairs.text_keys[images]).to(device)
    if mode == "random":
        bad = random_negatives(match[:, : len(rows)].cpu(), generator).to(device)
    elif mode == "hardest":
        good = (queries * goods).sum(1).detach() if search.semi_hard else None
        bad = hardest_negatives((queries @ goods.T).detach(), match[:, : len(rows)], good)
        fallback = random_negatives(match[:, : len(rows)].cpu(), generator).to(device)
        bad = torch.where(bad >= 0, bad, fallback)
    else:
        bad = torch.arange(len(rows), 2 * len(rows), device=device)
        bad = torch.where(match[torch.arange(len(rows), device=device), bad], torch.full_like(bad, -1), bad)
    usable = bad >= 0
    if not usable.any():
        return vectors.sum() * 0.0, 0.0
    q, good, worse = queries[usable], goods[usable], vectors[bad[usable]]
    active = float(((q * good).sum(1) - (q * worse).sum(1) < search.margin).float().mean())
    return hinge_loss(q, good, worse, search.margin), active


def _mine(model: TextImage, pairs: Pairs, device: torch.device, top: int, semi_hard: bool) -> torch.Tensor:
    """int64 [N, top]: for each row's caption, the rows whose images the current model ranks highest among those
    that do not match it (and, ``semi_hard``, below the row's own image), -1 where fewer exist."""
    queries, images = _vectors(model, pairs, device)
    own = (queries * images).sum(dim=1)
    out = []
    for start in range(0, len(pairs), 1024):
        part = slice(start, start + 1024)
        match = match_matrix(pairs.image_keys[part], pairs.text_keys[part], pairs.image_keys, pairs.text_keys)
        out.append(mined_negatives(queries[part] @ images.T, match, top, own[part] if semi_hard else None))
    return torch.cat(out)


def _vectors(
    model: TextImage, pairs: Pairs, device: torch.device, text_rows: torch.Tensor | None = None,
    image_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Query vectors float32 [T, dim] of ``text_rows`` and image vectors float32 [I, dim] of ``image_rows`` (each
    default: every row), on the CPU, by the model in eval mode."""
    every = torch.arange(len(pairs))
    model.eval()
    with torch.inference_mode():
        queries = [model.text_vectors(pairs.text[rows].to(device)).float().cpu()
                   for rows in (every if text_rows is None else text_rows).split(256)]  # fmt: skip
        images = [pairs.image_vectors(model, rows, device).float().cpu()
                  for rows in (every if image_rows is None else image_rows).split(256)]  # fmt: skip
    return torch.cat(queries), torch.cat(images)


def evaluate_text_image(
    model: TextImage, url: str, prep: Preprocessing, device: torch.device, targets: PairTargets
) -> dict[str, float]:
    """Text-to-image recall@1, @5, @10 over the table at ``url``: each distinct caption is a query over the
    table's distinct images. Returns {"recall_at_1", "recall_at_5", "recall_at_10", "queries", "images", "rows"}."""
    pairs = load_pairs(url, prep, targets)
    query_rows, image_rows = _first_rows(pairs.text_keys), _first_rows(pairs.image_keys)
    # Each distinct image once through the image tower (a COCO photo has five caption rows).
    queries, images = _vectors(model.to(device), pairs, device, query_rows, image_rows)
    return {**text_to_image_recall(queries, images, pairs, query_rows, image_rows), "rows": float(len(pairs))}


def text_to_image_recall(
    queries: torch.Tensor, images: torch.Tensor, pairs: Pairs, query_rows: torch.Tensor, image_rows: torch.Tensor
) -> dict[str, float]:
    """Recall@k of every distinct caption (``queries``: the vectors of its first row, ``query_rows``) over the
    distinct images (``images``: of their first rows, ``image_rows``): a hit when one of the k best images matches
    it (same image, or same caption)."""
    # Every image key a caption key goes with: an image matches a caption when one of its rows has that caption.
    caption_images = {}
    for text_key, image_key in zip(pairs.text_keys.tolist(), pairs.image_keys.tolist(), strict=True):
        caption_images.setdefault(text_key, set()).add(image_key)
    similarity = queries @ images.T
    order = similarity.argsort(dim=1, descending=True)[:, : max(RECALL_AT)]
    gallery = pairs.image_keys[image_rows]
    hits = torch.tensor(
        [
            [int(gallery[j]) in caption_images[int(pairs.text_keys[q])] for j in row]
            for q, row in zip(query_rows.tolist(), order.tolist(), strict=True)
        ]  # fmt: skip
    )
    return {
        **{f"recall_at_{k}": float(hits[:, :k].any(dim=1).float().mean()) for k in RECALL_AT},
        "queries": float(len(query_rows)),
        "images": float(len(image_rows)),
    }


def _first_rows(keys: torch.Tensor) -> torch.Tensor:
    """Indices of the first row of each distinct key, in row order."""
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(keys), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(len(keys)), reduce="amin")
    return first.sort().values


def search_fields(search: SearchSettings, text_tower: str, match_expr: str | None) -> dict[str, Any]:
    """What a text-image model's manifest records of its training: the triples' settings, which images answered a
    caption and, for the sentence tower, the frozen text encoder it was trained on (its package and version)."""
    fields = {"negatives": search.negatives, "margin": search.margin, "warmup_epochs": search.warmup_epochs,
              "mine_top": search.mine_top, "semi_hard": search.semi_hard, "text_tower": text_tower,
              "match": match_expr or "the same caption"}  # fmt: skip
    if text_tower == "sentence":
        from models.minilm import ENCODER_NAME  # noqa: PLC0415 - only the sentence tower needs it

        fields["text_encoder"] = ENCODER_NAME
    return fields
