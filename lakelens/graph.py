"""Connected components of a small pair graph in one process (a night's links between duplicate groups), Spark-free.

Example:
    >>> components_frame(pd.DataFrame({"image_id_a": ["a", "b"], "image_id_b": ["b", "c"]}))  # one group "a" of 3
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """(image_id_a, image_id_b) -> (image_id, group_id, group_size) of every image in a pair: group_id is the
    smallest image_id of its connected component, as ``lakelens.lsh_spark.transform_components`` gives it."""
    ends = np.concatenate([pairs["image_id_a"].to_numpy(object), pairs["image_id_b"].to_numpy(object)])
    codes, ids = pd.factorize(ends)
    half = len(pairs)
    graph = coo_matrix((np.ones(half, np.int8), (codes[:half], codes[half:])), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    frame = pd.DataFrame({"image_id": np.asarray(ids, object), "label": labels})
    by_label = frame.groupby("label")["image_id"]
    frame["group_id"] = by_label.transform("min")
    frame["group_size"] = by_label.transform("size").astype(np.int64)
    return frame[["image_id", "group_id", "group_size"]]


def group_moves(stand_ins: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """How new pairs merge duplicate groups, from the groups before: ``stand_ins`` (image_id, group_id, group_size)
    are the group rows of the pairs' images that had a group, ``pairs`` (image_id_a, image_id_b) the new pairs.

    Each image stands for its group (its group_id; itself, as a group of one, where it had none), and the
    components of the stand-ins' links are the merges. Returns (stand_in, group_id, group_size, new) for every
    stand-in of a merge: the merged group's id (its smallest image_id) and size, and whether the stand-in is an
    image without a group before. Groups that no new pair links to another are not in it.
    """
    group_of = dict(zip(stand_ins["image_id"], stand_ins["group_id"], strict=True))
    size_of = dict(zip(stand_ins["group_id"], stand_ins["group_size"], strict=True))
    ends = [pairs[side].map(group_of).fillna(pairs[side]) for side in ("image_id_a", "image_id_b")]
    links = pd.DataFrame({"image_id_a": ends[0], "image_id_b": ends[1]})
    links = links[links["image_id_a"] != links["image_id_b"]]
    if links.empty:
        return pd.DataFrame({"stand_in": pd.Series(dtype=object), "group_id": pd.Series(dtype=object),
                             "group_size": pd.Series(dtype=np.int64), "new": pd.Series(dtype=bool)})  # fmt: skip
    merged = components_frame(links).rename(columns={"image_id": "stand_in"})
    merged["new"] = ~merged["stand_in"].isin(size_of.keys())
    members = merged["stand_in"].map(size_of).fillna(1).astype(np.int64)
    merged["group_size"] = members.groupby(merged["group_id"]).transform("sum").astype(np.int64)
    return merged[["stand_in", "group_id", "group_size", "new"]]
