"""Training and evaluation of the captioner on a petastorm snapshot with a ``caption`` column; Spark-free.

CUDA with mixed precision when present, the CPU otherwise; seeds fixed; one log line per epoch. Quality is
corpus BLEU-4 of greedy and beam-search captions against the row's caption.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.bleu import corpus_bleu
from models.captioner import MAX_CAPTION_LENGTH, Captioner
from models.data import Preprocessing, table_loader
from models.train_loop import Optimiser, TrainSettings, seed_everything
from models.vocabulary import UNK, Vocabulary

log = logging.getLogger("lakelens.train")
# References are read as token ids too; this many words keep every reference whole (scenes: 22, COCO: under 60).
REFERENCE_MAX_LENGTH = 64
# A reference word outside the vocabulary: no hypothesis word can equal it, as none could equal the real word.
_UNKNOWN_REFERENCE_WORD = "<unk-ref>"


@dataclass(frozen=True)
class CaptionTargets:
    """``caption`` -> "tokens" int64 [max_length + 2]: <bos>, the words' ids (<unk> if unknown), <eos>, <pad>s."""

    vocabulary_words: tuple[str, ...]
    max_length: int = MAX_CAPTION_LENGTH
    columns: tuple[str, ...] = ("caption",)

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        return [("tokens", np.int64, (self.max_length + 2,))]

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        vocabulary = Vocabulary(self.vocabulary_words)
        return {
            "tokens": [np.asarray(vocabulary.encode(text or "", self.max_length), np.int64) for text in rows["caption"]]
        }


def train_captioner(
    model: Captioner, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device,
    vocabulary: Vocabulary,
) -> list[dict[str, float]]:  # fmt: skip
    """Train in place with teacher forcing on the table at ``train_url`` (``bytes``, ``caption``); AdamW with a
    cosine schedule over epochs and gradient clipping. Returns per epoch {loss, rows, images_per_s}."""
    _check_vocabulary(model, vocabulary)
    seed_everything(settings.seed)
    model.to(device).train()
    # Recurrent nets have rare gradient spikes; clipping keeps one batch from undoing an epoch.
    optimiser = Optimiser(model, settings, device, clip_norm=1.0)
    targets = CaptionTargets(tuple(vocabulary.words))
    history = []
    for epoch in range(settings.epochs):
        started, seen, total = time.perf_counter(), 0, 0.0
        with table_loader(
            train_url, prep, settings.batch_size, targets, seed=settings.seed + epoch, workers=settings.workers
        ) as loader:
            for batch in loader:
                images = batch["pixels"].to(device, non_blocking=True)
                tokens = batch["tokens"].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=optimiser.amp):
                    loss = model.loss(model(images, tokens)["logits"], tokens)
                optimiser.step(loss)
                seen += len(images)
                total += loss.item() * len(images)
        optimiser.end_epoch()
        stats = {
            "loss": total / max(seen, 1),
            "rows": float(seen),
            "images_per_s": seen / (time.perf_counter() - started),
        }
        history.append(stats)
        log.info("epoch %d/%d: caption loss %.4f, %.0f images/s", epoch + 1, settings.epochs, stats["loss"],
                 stats["images_per_s"])  # fmt: skip
    return history


def pretrain_decoder(
    model: Captioner, captions: Sequence[str], prep: Preprocessing, settings: TrainSettings, device: torch.device,
    vocabulary: Vocabulary,
) -> list[dict[str, float]]:  # fmt: skip
    """Teach the decoder the language of ``captions`` (text without images) before it sees any image: each caption
    is read against a blank image, so the model learns which words follow which, and training on real pairs then
    only has to tie them to what is in the picture. Returns per epoch {loss, rows, captions_per_s}."""
    _check_vocabulary(model, vocabulary)
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = Optimiser(model, settings, device, clip_norm=1.0)
    tokens = torch.tensor([vocabulary.encode(c, MAX_CAPTION_LENGTH) for c in captions], dtype=torch.long)
    blank = torch.zeros(1, prep.channels, prep.size, prep.size, device=device)
    history = []
    for epoch in range(settings.epochs):
        started, total = time.perf_counter(), 0.0
        order = torch.randperm(len(tokens))
        for start in range(0, len(tokens), settings.batch_size):
            batch = tokens[order[start : start + settings.batch_size]].to(device)
            with torch.autocast(device.type, enabled=optimiser.amp):
                # One blank image encoded and broadcast to the batch: the same gradients as a batch of blanks, at
                # the cost of one image through the encoder (a pretrained backbone's is most of the model).
                state = tuple(s.expand(len(batch), *s.shape[1:]) for s in model.start(blank))
                loss = model.loss(model.decode(state, batch)["logits"], batch)
            optimiser.step(loss)
            total += loss.item() * len(batch)
        optimiser.end_epoch()
        stats = {
            "loss": total / max(len(tokens), 1),
            "rows": float(len(tokens)),
            "captions_per_s": len(tokens) / (time.perf_counter() - started),
        }
        history.append(stats)
        log.info("pretraining epoch %d/%d: caption loss %.4f, %.0f captions/s", epoch + 1, settings.epochs,
                 stats["loss"], stats["captions_per_s"])  # fmt: skip
    return history


@torch.no_grad()
def evaluate_captioner(
    model: Captioner, url: str, prep: Preprocessing, device: torch.device, vocabulary: Vocabulary,
    batch_size: int = 256, beam_size: int = 3,
) -> dict[str, float]:  # fmt: skip
    """Corpus BLEU-4 of greedy and beam-search captions over every row of the table at ``url``, each row's caption
    its reference: {"bleu4_greedy", "bleu4_beam", "rows"}."""
    _check_vocabulary(model, vocabulary)
    model.to(device).eval()
    references, greedy, beam = [], [], []
    targets = CaptionTargets(tuple(vocabulary.words), REFERENCE_MAX_LENGTH)
    with table_loader(url, prep, batch_size, targets, shuffle=False) as loader:
        for batch in loader:
            images = batch["pixels"].to(device)
            references += [[reference_words(row, vocabulary)] for row in batch["tokens"].tolist()]
            greedy += [vocabulary.decode(row).split() for row in model.greedy(images)[0].tolist()]
            beam += [vocabulary.decode(row).split() for row in model.beam_search(images, beam_size)[0].tolist()]
    if not references:
        raise ValueError(f"no rows to evaluate in {url}")
    return {
        "bleu4_greedy": corpus_bleu(references, greedy),
        "bleu4_beam": corpus_bleu(references, beam),
        "rows": float(len(references)),
    }


def reference_words(ids: list[int], vocabulary: Vocabulary) -> list[str]:
    """The words of a reference caption's ids (from ``CaptionTargets``); an unknown word matches no hypothesis."""
    words = vocabulary.decode(ids).split()
    return [_UNKNOWN_REFERENCE_WORD if word == vocabulary.words[UNK] else word for word in words]


def _check_vocabulary(model: Captioner, vocabulary: Vocabulary) -> None:
    if model.out.out_features != len(vocabulary):
        raise ValueError(
            f"the captioner predicts {model.out.out_features} tokens but the vocabulary has {len(vocabulary)}: "
            "build the model with vocab_size=len(vocabulary)"
        )
