"""The plan of a synthetic data set: which file index is a base scene, a near-duplicate copy or a relayout."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lakelens.scenes.transforms import TRANSFORM_KINDS

# Copies per near-duplicate group and relayouts per similar group are drawn from 1..this.
_MAX_PER_GROUP = 3


class Item(NamedTuple):
    """One file to produce. ``kind`` is "base", "copy" or "relayout"; ``base`` is the source scene index
    (the item's own index for a base); ``png`` is this file's format and ``base_png`` the base file's;
    ``transform`` is a TRANSFORM_KINDS entry for copies."""

    index: int
    kind: str
    base: int
    png: bool
    base_png: bool
    transform: str | None
    dup_group: int | None
    similar_group: int | None


def plan_items(n: int, seed: int, png_fraction: float, dup_fraction: float, similar_fraction: float) -> list[Item]:
    """Assigns a role to every item index 0..n-1; a pure function of the arguments."""
    rng = np.random.default_rng(seed)
    n_dup = int(round(dup_fraction * n))
    n_sim = int(round(similar_fraction * n))
    n_base = n - n_dup - n_sim
    # Shuffle roles over file indices so copies are not recognisable by their file number.
    slots = [int(i) for i in rng.permutation(n)]
    bases = slots[:n_base]
    png = {b: bool(p) for b, p in zip(bases, rng.random(n_base) < png_fraction, strict=True)}
    group_bases = [bases[i] for i in rng.permutation(n_base)]
    extras = iter(slots[n_base:])
    dup_bases: set[int] = set()
    sim_bases: set[int] = set()
    items: list[Item] = []

    def take_groups(total: int, add: Callable[[int, int], None]) -> None:
        remaining = total
        while remaining > 0 and group_bases:
            base = group_bases.pop()
            k = min(int(rng.integers(1, _MAX_PER_GROUP + 1)), remaining)
            add(base, k)
            remaining -= k

    def add_dups(base: int, k: int) -> None:
        dup_bases.add(base)
        for k_idx in rng.choice(len(TRANSFORM_KINDS), size=k, replace=False):
            kind = TRANSFORM_KINDS[k_idx]
            # A JPEG re-encode is a JPEG file whatever the base was; other copies keep the base's format.
            copy_png = png[base] and kind != "jpeg"
            items.append(Item(next(extras), "copy", base, copy_png, png[base], kind, base, None))

    def add_relayouts(base: int, k: int) -> None:
        sim_bases.add(base)
        for _ in range(k):
            idx = next(extras)
            is_png = bool(rng.random() < png_fraction)
            items.append(Item(idx, "relayout", base, is_png, is_png, None, None, base))

    take_groups(n_dup, add_dups)
    take_groups(n_sim, add_relayouts)
    for b in bases:
        dup = b if b in dup_bases else None
        sim = b if b in sim_bases else None
        items.append(Item(b, "base", b, png[b], png[b], None, dup, sim))
    # Only reachable for tiny n where groups outnumber bases: leftover indices become plain scenes.
    for idx in extras:
        is_png = bool(rng.random() < png_fraction)
        items.append(Item(idx, "base", idx, is_png, is_png, None, None, None))
    return sorted(items)
