"""Two towers into one space, for search by text: a text tower and an image tower, each ending in a projection to
unit vectors of one length, so that M(query, image) = cosine = a dot product.

Every image vector is computed once (by the annotate task ``search``), every query vector once; a query is then
ranked against the image vectors by cosine, with no network run per (query, image) pair.

- Image tower: the embedder (``models.embedder.Embedder``): this project's conv stages for scenes, or a pretrained
  backbone (``backbone=mobilenet_v2``) for photos.
- Text tower: ``words``: word embeddings of the caption vocabulary, a bidirectional GRU, the mean over the words and a
  projection (for the scenes' captions, whose words it learns); ``sentence``: the frozen pretrained sentence encoder
  all-MiniLM-L6-v2 (``models.minilm``, 384-d, for free text), followed by a learnt projection. The sentence encoder's
  weights are not part of this model's: they come from their package, named with its version in the manifest.

Shapes: images float32 [N, C, H, W] -> {"vectors": float32 [N, dim]}; text input -> float32 [Q, dim]: token ids
int64 [Q, L] (``models.vocabulary.Vocabulary.encode``) for ``words``, sentence vectors float32 [Q, 384] for
``sentence``. All vectors have unit L2 norm.

Example:
    >>> model = TextImage(dim=64, vocab_size=len(vocabulary))
    >>> images = model(pixels)["vectors"]                               # [N, 64]
    >>> queries = model.text_vectors(text_input(["a red circle"], "words", vocabulary))   # [1, 64]
    >>> (queries @ images.T).argsort(descending=True)                    # best images first
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load
from torch import nn
from torch.nn import functional as F

from lakelens.errors import InputError
from models.data import Preprocessing
from models.embedder import Embedder
from models.registry import RegistryError, install_bundled, read_entry, versions
from models.vocabulary import PAD, Vocabulary, tokenize

TEXT_TOWERS = ("words", "sentence")
# Words of a query or caption the words tower reads; the rest are cut off (scene captions have at most 22).
MAX_TEXT_WORDS = 32
SENTENCE_DIM = 384


class WordTower(nn.Module):
    """Word embeddings, a bidirectional GRU over them, the mean of its outputs over the real tokens (padding left
    out) and a linear projection: token ids int64 [Q, L] -> float32 [Q, dim], unit length."""

    def __init__(self, vocab_size: int, dim: int, width: int = 128) -> None:
        super().__init__()
        if vocab_size <= len(("<pad>", "<bos>", "<eos>", "<unk>")):
            raise ValueError(f"the words tower needs a vocabulary of words, got {vocab_size} tokens")
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * width, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != PAD).sum(dim=1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = nn.utils.rnn.pad_packed_sequence(
            self.gru(packed)[0], batch_first=True, total_length=tokens.shape[1]
        )
        pooled = outputs.sum(dim=1) / lengths[:, None].to(outputs.dtype)
        return F.normalize(self.project(pooled), dim=1)


class SentenceTower(nn.Module):
    """A learnt projection of frozen sentence vectors: float32 [Q, in_dim] -> float32 [Q, dim], unit length. Two
    layers with a residual linear path: the linear map alone keeps what the sentence encoder knows, the hidden
    layer adds what the images need."""

    def __init__(self, in_dim: int, dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, dim)
        self.hidden = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, sentences: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(sentences) + self.hidden(sentences), dim=1)


class TextImage(nn.Module):
    """The two towers. ``forward`` is the image tower (what the annotate task runs); ``text_vectors`` the text one.

    Args:
        dim: length of the shared space's vectors.
        in_channels, widths, backbone: the image tower's (``models.embedder.Embedder``).
        text_tower: ``words`` or ``sentence`` (:data:`TEXT_TOWERS`).
        vocab_size: the words tower's vocabulary size (the manifest lists the words); 0 for ``sentence``.
        text_width: the words tower's embedding and GRU width.
    """

    def __init__(
        self,
        dim: int = 64,
        in_channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128),
        backbone: str | None = None,
        text_tower: str = "words",
        vocab_size: int = 0,
        text_width: int = 128,
    ) -> None:
        super().__init__()
        if text_tower not in TEXT_TOWERS:
            raise ValueError(f"text_tower must be one of {', '.join(TEXT_TOWERS)}, got {text_tower!r}")
        if text_tower == "sentence" and vocab_size:
            raise ValueError("the sentence tower has no vocabulary of its own: vocab_size must be 0")
        self.text_tower = text_tower
        self.image = Embedder(dim, in_channels, tuple(widths), backbone)
        if text_tower == "words":
            self.text: nn.Module = WordTower(vocab_size, dim, text_width)
        else:
            self.text = SentenceTower(SENTENCE_DIM, dim)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images float32 [N, C, H, W] -> {"vectors": float32 [N, dim], unit length}."""
        return self.image(images)

    def text_vectors(self, text: torch.Tensor) -> torch.Tensor:
        """Token ids int64 [Q, L] (words) or sentence vectors float32 [Q, 384] (sentence) -> float32 [Q, dim]."""
        return self.text(text)


def text_input(texts: Sequence[str], text_tower: str, vocabulary: Vocabulary | None) -> torch.Tensor:
    """What the text tower reads for ``texts``: token ids int64 [Q, MAX_TEXT_WORDS + 2] (``words``: <bos>, the
    words, <eos>, <pad>s; an unknown word is <unk>) or sentence vectors float32 [Q, 384] (``sentence``).

    Raises:
        InputError: a text has no word (empty, or only punctuation): it asks for nothing to rank by.
    """
    for text in texts:
        if not tokenize(text or ""):
            raise InputError(f"the query {text!r} has no words: give a description such as 'a red car on a beach'")
    if text_tower == "words":
        if vocabulary is None:
            raise ValueError("the words tower needs the model's vocabulary")
        return torch.tensor([vocabulary.encode(t, MAX_TEXT_WORDS) for t in texts], dtype=torch.int64)
    from models.minilm import SentenceEncoder  # noqa: PLC0415 - 90 MB of weights, only for this tower

    return SentenceEncoder.shared().encode(list(texts))


def query_vectors(model: TextImage, texts: Sequence[str], vocabulary: Vocabulary | None) -> torch.Tensor:
    """Unit vectors float32 [Q, dim] of ``texts`` in the model's space (inference, on the model's device)."""
    inputs = text_input(texts, model.text_tower, vocabulary)
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model.eval().text_vectors(inputs.to(device)).float()


@dataclass(frozen=True)
class ImageTowerStart:
    """A registered embedder whose weights the image tower starts from: its ``NAME vN``, the architecture
    arguments the tower takes from it (dim, in_channels, widths, backbone), its state and its preprocessing."""

    ref: str
    arch_args: dict[str, Any]
    state: dict[str, torch.Tensor]
    preprocessing: Preprocessing


def image_tower_start(root: str | Path, ref: str) -> ImageTowerStart:
    """The registry embedder ``ref`` (``NAME`` or ``NAME:vN``) as the image tower's start; a bundled one (the scene
    ``embedder``) is installed first where the registry lacks it.

    Raises:
        RegistryError: no such model, or not an embedder.
    """
    name, _, version = ref.partition(":")
    if not version and not versions(root, name):
        install_bundled(root, names=[name])
    manifest, weights = read_entry(root, name, version or None)
    if manifest.architecture != "embedder":
        raise RegistryError(
            f"model {name} {manifest.version} is a {manifest.architecture}, not an embedder: the image tower starts "
            "from a registry model of architecture embedder (e.g. the bundled scene embedder, 'embedder'); for "
            "photos use --backbone"
        )
    keep = ("dim", "in_channels", "widths", "backbone")
    return ImageTowerStart(
        f"{name} {manifest.version}", {k: v for k, v in manifest.arch_args.items() if k in keep}, load(weights),
        Preprocessing.from_manifest(manifest.preprocessing),
    )  # fmt: skip
