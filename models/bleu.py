"""Corpus-level BLEU (Papineni et al. 2002) as nltk's ``corpus_bleu`` computes it with no smoothing.

Clipped n-gram matches and hypothesis n-gram counts are summed over the whole corpus before the precisions are
taken; the score is their geometric mean (uniform weights) times the brevity penalty, which compares the total
hypothesis length with the total of each hypothesis's closest reference length (ties: the shorter reference).

Example:
    >>> corpus_bleu([[["a", "red", "circle", "left", "of"]]], [["a", "red", "circle", "left", "of"]])
    1.0
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def ngrams(words: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """How often each n-gram (a tuple of ``n`` words) occurs in ``words``."""
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(references: list[list[list[str]]], hypotheses: list[list[str]], n: int = 4) -> float:
    """BLEU-``n`` of ``hypotheses`` (one word list each) against their references (one or more word lists each).

    Returns:
        a float in [0, 1]; 0 when some order 1..n has no match at all (no smoothing), or no hypothesis has words.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference lists for {len(hypotheses)} hypotheses")
    matches, totals = [0] * n, [0] * n
    hypothesis_length, reference_length = 0, 0
    for refs, hyp in zip(references, hypotheses, strict=True):
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        for order in range(1, n + 1):
            counts = ngrams(hyp, order)
            most = Counter()
            for ref in refs:
                most |= ngrams(ref, order)  # the largest count of each n-gram in any one reference
            matches[order - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[order - 1] += max(1, len(hyp) - order + 1)  # nltk counts at least one n-gram per hypothesis
        hypothesis_length += len(hyp)
        reference_length += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    if hypothesis_length == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / n
    brevity = 1.0 if hypothesis_length > reference_length else math.exp(1 - reference_length / hypothesis_length)
    return brevity * math.exp(log_precision)
