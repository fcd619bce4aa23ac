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
