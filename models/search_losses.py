"""The ranking loss of the text-image space and its three ways of choosing the bad image of a triple.

A triple is (query, good image, bad image) and its loss the pairwise hinge max(0, delta - M(q, good) + M(q, bad)),
M the cosine. Which image is bad decides what the model learns:

- ``random``: any image that does not match the query. Easy: after a few epochs most triples cost nothing.
- ``hardest``: the non-matching image of the batch the current model ranks highest for the query.
- ``mined``: among every image of the training set (the index, re-made each epoch with the current model), one of
  the ``top`` highest-ranked that do not match the query.

Hard negatives are what teach fine distinctions, but they collapse a model (every vector onto one point, where the
loss sits at the margin): the training (``models.text_image_training``) starts with random ones for its warm-up
epochs, and takes hard ones only among the images ranked below the query's good image (semi-hard).

A query matches an image when they come from the same row's image or share the caption (``keys``): scenes made from
the same objects have the same caption and are all right answers.

Shapes: query vectors float32 [Q, D], image vectors float32 [M, D], unit length; keys int64.
"""

from __future__ import annotations

import torch

NEGATIVES = ("random", "hardest", "mined")


def match_matrix(
    query_images: torch.Tensor, query_texts: torch.Tensor, images: torch.Tensor, image_texts: torch.Tensor
) -> torch.Tensor:
    """bool [Q, M]: query i matches image j when their image keys or their caption keys are equal.

    Args:
        query_images, query_texts: int64 [Q]: the key of the image each query was written for, and of its text.
        images, image_texts: int64 [M]: each image's key and the key of its caption.
    """
    return (query_images[:, None] == images[None, :]) | (query_texts[:, None] == image_texts[None, :])


def hinge_loss(queries: torch.Tensor, goods: torch.Tensor, bads: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of max(0, margin - M(q, good) + M(q, bad)) over the triples: each argument float32 [Q, D]."""
    return torch.relu(margin - (queries * goods).sum(dim=1) + (queries * bads).sum(dim=1)).mean()


def random_negatives(match: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """int64 [Q]: for each query a uniformly drawn image it does not match, -1 where every image matches it."""
    weights = (~match).float()
    usable = weights.sum(dim=1) > 0
    weights[~usable] = 1.0
    drawn = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return torch.where(usable, drawn, torch.full_like(drawn, -1))


def semi_hard(similarity: torch.Tensor, match: torch.Tensor, good: torch.Tensor | None) -> torch.Tensor:
    """bool [Q, M]: the images that may be a query's bad one: those it does not match and, with ``good`` (float32
    [Q], the similarity of each query to its good image), only those ranked below the good image (semi-hard,
    Schroff et al. 2015: a negative above the positive is, early on, often one the model cannot yet tell apart,
    and choosing it collapses the space)."""
    allowed = ~match
    if good is not None:
        allowed &= similarity < good[:, None]
    return allowed


def hardest_negatives(similarity: torch.Tensor, match: torch.Tensor, good: torch.Tensor | None = None) -> torch.Tensor:
    """int64 [Q]: for each query the image it does not match with the highest similarity (float32 [Q, M]), below
    its good image's ``good`` when given (:func:`semi_hard`); -1 where there is none."""
    masked = similarity.masked_fill(~semi_hard(similarity, match, good), float("-inf"))
    best = masked.argmax(dim=1)
    return torch.where(torch.isfinite(masked.max(dim=1).values), best, torch.full_like(best, -1))


def mined_negatives(
    similarity: torch.Tensor, match: torch.Tensor, top: int, good: torch.Tensor | None = None
) -> torch.Tensor:
    """int64 [Q, top]: each query's ``top`` highest-ranked images it does not match (below ``good`` when given,
    :func:`semi_hard`), best first; -1 fills the row where fewer exist."""
    top = min(top, similarity.shape[1])
    masked = similarity.masked_fill(~semi_hard(similarity, match, good), float("-inf"))
    values, indices = masked.topk(top, dim=1)
    return torch.where(torch.isfinite(values), indices, torch.full_like(indices, -1))
