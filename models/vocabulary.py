"""Caption vocabulary: words <-> token ids, built from the training captions.

Ids 0-3 are the specials (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``) in every vocabulary, so a model knows them as
constants; the words follow, sorted, so the same captions always give the same ids. ``words`` (all tokens in id
order) is what the registry manifest stores; ``Vocabulary(words)`` rebuilds it.

Example:
    >>> vocab = Vocabulary.build(["A man riding a horse.", "a red circle"])
    >>> vocab.encode("a red horse", max_length=4)
    [1, 4, 8, 6, 2, 0]
    >>> vocab.decode([4, 8, 6, 2, 0])
    'a red horse'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
# Apostrophes join their word ("man's" -> "mans"); any other non-alphanumeric character separates words.
_APOSTROPHES = re.compile(r"['\u2019]")
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers of ``text``, punctuation dropped: "A man, 2 dogs." -> [a, man, 2, dogs]."""
    return _WORD.findall(_APOSTROPHES.sub("", text.lower()))


class Vocabulary:
    """Token ids of caption words; ``words[i]`` is the token of id ``i`` and the first four are ``SPECIALS``."""

    def __init__(self, words: Sequence[str]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {list(words[: len(SPECIALS)])}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary lists each word once")
        self.words: list[str] = list(words)
        self._ids = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """The words seen at least ``min_count`` times in ``captions``, sorted after the specials."""
        counts = Counter(word for caption in captions for word in tokenize(caption))
        return cls([*SPECIALS, *sorted(w for w, n in counts.items() if n >= min_count and w not in SPECIALS)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_length: int) -> list[int]:
        """``max_length + 2`` ids: <bos>, the first ``max_length`` words (unknown ones <unk>), <eos>, <pad>s."""
        ids = [self._ids.get(word, UNK) for word in tokenize(text)[:max_length]]
        return [BOS, *ids, EOS] + [PAD] * (max_length - len(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """The words of ``ids`` up to the first <eos> or <pad>, <bos> skipped, joined by spaces."""
        words = []
        for i in ids:
            if i in (EOS, PAD):
                break
            if i != BOS:
                words.append(self.words[i])
        return " ".join(words)
