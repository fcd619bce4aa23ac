"""BERT's uncased WordPiece tokenizer in pure Python, so that a frozen BERT encoder (models/minilm.py) runs
without ``transformers`` or ``tokenizers``.

It gives the ids Hugging Face's BERT tokenizer (``tokenizers``' BertNormalizer, BertPreTokenizer and WordPiece, as
sentence-transformers runs it) gives with ``do_lower_case=True, strip_accents=None``: the five special tokens matched
verbatim in the raw text, then BERT's normalisation (control characters dropped, white space made spaces, CJK
ideographs spaced, accents stripped, each character lower-cased), a split on white space and punctuation, and a
greedy longest-match-first WordPiece with ``##`` continuations. Character classes come from Python's
``unicodedata`` (Unicode 14 on Python 3.11), whose tables differ from ``tokenizers``' for about 550 code points of
rare scripts, assigned or reclassed since Unicode 8 (marks, punctuation, format characters).

Example:
    >>> tok = WordPiece.from_file(model_dir / "vocab.txt")
    >>> ids, mask = tok.encode(["a small green star", ""], max_length=256)   # int64 [2, 6] each
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION = "##"
# A word longer than this many characters becomes [UNK] whole, as in BERT.
MAX_WORD_CHARS = 100
_SPECIAL = re.compile("(" + "|".join(re.escape(token) for token in SPECIAL_TOKENS) + ")")
# BERT's "Chinese characters": the CJK Unified Ideographs blocks and their compatibility blocks. Extension E starts
# at 0x2B920 as in ``tokenizers`` (BERT's Python code has 0x2B820), so that 256 rare ideographs give the same ids.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip
# Control characters BERT drops: these categories (not unassigned code points, which ``tokenizers`` keeps), less
# tab, newline and carriage return, which are white space.
_CONTROL_CATEGORIES = ("Cc", "Cf", "Co", "Cs")


class WordPiece:
    """A BERT uncased tokenizer over a fixed vocabulary.

    Args:
        vocab: the tokens, index = id (``vocab.txt``'s lines); must hold the five special tokens.
    """

    def __init__(self, vocab: Sequence[str]) -> None:
        self.ids = {token: i for i, token in enumerate(vocab)}
        missing = [token for token in SPECIAL_TOKENS if token not in self.ids]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {', '.join(missing)}")

    @classmethod
    def from_file(cls, path: str | Path) -> WordPiece:
        """The tokenizer of a BERT ``vocab.txt`` (one token a line, line number = id)."""
        return cls(Path(path).read_text(encoding="utf-8").splitlines())

    def tokenize(self, text: str) -> list[str]:
        """``text`` as WordPiece tokens, without [CLS] and [SEP]; a special token written in the text (e.g.
        ``[MASK]``, case as written) stays one token."""
        tokens = []
        for i, piece in enumerate(_SPECIAL.split(text)):
            if i % 2:
                tokens.append(piece)
            else:
                for word in _pre_tokenize(_normalize(piece)):
                    tokens.extend(self._word_pieces(word))
        return tokens

    def token_ids(self, text: str, max_length: int) -> list[int]:
        """The ids of [CLS] ``text`` [SEP], the text cut to its first ``max_length - 2`` tokens."""
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 (room for [CLS] and [SEP]), not {max_length}")
        pieces = self.tokenize(text)[: max_length - 2]
        return [self.ids[CLS], *(self.ids[token] for token in pieces), self.ids[SEP]]

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Id sequences as a batch padded with [PAD] to the longest: ``(ids, mask)``, both int64 [N, L], mask 1
        on real tokens and 0 on padding."""
        length = max((len(seq) for seq in sequences), default=0)
        ids = torch.full((len(sequences), length), self.ids[PAD], dtype=torch.int64)
        mask = torch.zeros((len(sequences), length), dtype=torch.int64)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.int64)
            mask[row, : len(seq)] = 1
        return ids, mask

    def encode(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` as [CLS] ... [SEP] id sequences of at most ``max_length`` tokens, padded to the longest:
        ``(ids, mask)``, both int64 [N, L]."""
        return self.pad([self.token_ids(text, max_length) for text in texts])

    def _word_pieces(self, word: str) -> list[str]:
        if len(word) > MAX_WORD_CHARS:
            return [UNK]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                if piece in self.ids:
                    pieces.append(piece)
                    start = end
                    break
            else:
                return [UNK]
        return pieces


def _normalize(text: str) -> str:
    """BERT's uncased normalisation: NUL, U+FFFD and control characters dropped, white space made spaces, spaces
    around CJK ideographs, NFD with the non-spacing marks dropped, then each character lower-cased on its own (so
    a final capital sigma becomes σ, as in ``tokenizers``, not ς)."""
    chars = []
    for char in text:
        if char in "\x00\ufffd" or _is_control(char):
            continue
        if char.isspace() or unicodedata.category(char) == "Zs":
            chars.append(" ")
        elif _is_cjk(char):
            chars.extend((" ", char, " "))
        else:
            chars.append(char)
    stripped = (c for c in unicodedata.normalize("NFD", "".join(chars)) if unicodedata.category(c) != "Mn")
    return "".join(c.lower() for c in stripped)


def _pre_tokenize(text: str) -> list[str]:
    """Words split on white space, with each punctuation character a word of its own."""
    words = []
    for chunk in text.split():
        start = 0
        for i, char in enumerate(chunk):
            if _is_punctuation(char):
                words.extend((chunk[start:i], char) if i > start else (char,))
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char) in _CONTROL_CATEGORIES


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    """Unicode punctuation (P*) or an ASCII symbol (``string.punctuation``: ``$``, ``+``, ``^`` ... too)."""
    return char in string.punctuation or unicodedata.category(char).startswith("P")
