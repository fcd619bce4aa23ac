"""Parallel, deterministic generation of a synthetic scene data set with ground truth.

Layout written under ``out_dir``::

    images/s000123.jpg|png   one file per item (base scenes, near-duplicate copies, relayouts)
    ground_truth.parquet     one row per file (schema: GROUND_TRUTH_SCHEMA)
    _SYNTH.json              {"params": ..., "summary": ...}; written last, marks a complete run

Determinism: the plan (roles of all item indices) comes from ``default_rng(seed)``; item ``i`` draws from
``default_rng([seed, i])`` and a copy re-renders its base from the base's stream, so every output byte is
independent of the number of workers and of chunking.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lakelens.scenes.captions import make_caption
from lakelens.scenes.plan import Item, plan_items
from lakelens.scenes.render import Scene, SceneObject, render_layout, render_scene, visible_boxes
from lakelens.scenes.transforms import apply_transform

GENERATOR_VERSION = "1"
BASE_JPEG_QUALITY = 90
_IMAGES = "images"
_GROUND_TRUTH = "ground_truth.parquet"
_MARKER = "_SYNTH.json"
_FILE_RE = re.compile(r"^s\d+\.(jpg|png)$")

_BOX = pa.struct([("x0", pa.int32()), ("y0", pa.int32()), ("w", pa.int32()), ("h", pa.int32())])
GROUND_TRUTH_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("image_id", pa.string()),
        ("scene_id", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("labels", pa.list_(pa.string())),
        ("colours", pa.list_(pa.string())),
        ("sizes", pa.list_(pa.string())),
        ("boxes", pa.list_(_BOX)),
        ("mask", pa.binary()),
        ("caption", pa.string()),
        ("dup_group", pa.int64()),
        ("transform", pa.string()),
        ("similar_group", pa.int64()),
    ]
)


def _stream(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _encode(image: np.ndarray, png: bool) -> bytes:
    buf = io.BytesIO()
    if png:
        # Level 1: on grainy images it is ~4x faster than the default and no larger.
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=BASE_JPEG_QUALITY)
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _file_name(item: Item) -> str:
    return f"{_IMAGES}/s{item.index:06d}.{'png' if item.png else 'jpg'}"


def _row(
    item: Item,
    name: str,
    data: bytes,
    class_mask: np.ndarray,
    instance: np.ndarray,
    objects: list[SceneObject],
    centres: np.ndarray,
    transform: str,
) -> dict[str, Any]:
    """Ground-truth row; objects with no visible pixel (only possible in copies) are left out."""
    boxes = visible_boxes(instance, len(objects))
    keep = [i for i, b in enumerate(boxes) if b is not None]
    mask_buf = io.BytesIO()
    Image.fromarray(class_mask).save(mask_buf, format="PNG")
    return {
        "file": name,
        "image_id": hashlib.sha256(data).hexdigest(),
        "scene_id": item.base if item.kind == "copy" else item.index,
        "width": int(instance.shape[1]),
        "height": int(instance.shape[0]),
        "labels": [objects[i].shape for i in keep],
        "colours": [objects[i].colour for i in keep],
        "sizes": [objects[i].size for i in keep],
        "boxes": [dict(zip(("x0", "y0", "w", "h"), boxes[i], strict=True)) for i in keep],
        "mask": mask_buf.getvalue(),
        "caption": make_caption(
            [
                (objects[i].shape, objects[i].colour, objects[i].size, float(centres[i, 0]), float(centres[i, 1]))
                for i in keep
            ]
        ),
        "dup_group": item.dup_group,
        "transform": transform,
        "similar_group": item.similar_group,
    }


def _centres(scene: Scene) -> np.ndarray:
    return np.array([[o.cx, o.cy] for o in scene.objects], dtype=np.float64).reshape(-1, 2)


def _make_item(item: Item, seed: int, size: int, out_dir: Path) -> dict[str, Any]:
    """Renders, encodes and writes one item; returns its ground-truth row."""
    name = _file_name(item)
    if item.kind == "copy":
        base = render_scene(_stream(seed, item.base), size)
        # Transform what the base file actually contains (decoded JPEG), like a real re-upload would.
        pixels = base.image if item.base_png else _decode(_encode(base.image, False))
        t = apply_transform(
            str(item.transform), _stream(seed, item.index), pixels, base.class_mask, base.instance, _centres(base)
        )
        data = t.encoded if t.encoded is not None else _encode(t.image, item.png)
        row = _row(item, name, data, t.class_mask, t.instance, base.objects, t.centres, t.name)
    else:
        if item.kind == "relayout":
            source = render_scene(_stream(seed, item.base), size)
            scene = render_layout(_stream(seed, item.index), source.objects, size)
        else:
            scene = render_scene(_stream(seed, item.index), size)
        data = _encode(scene.image, item.png)
        transform = "relayout" if item.kind == "relayout" else "original"
        row = _row(item, name, data, scene.class_mask, scene.instance, scene.objects, _centres(scene), transform)
    (out_dir / name).write_bytes(data)
    return row


def _make_chunk(items: list[Item], seed: int, size: int, out_dir: str) -> list[dict[str, Any]]:
    """Worker entry point: produces a list of items in order."""
    return [_make_item(item, seed, size, Path(out_dir)) for item in items]


def _mp_context() -> BaseContext:
    """fork on Linux: callers need no ``__main__`` guard (scripts, stdin, notebooks), and workers only use
    numpy/PIL, so inheriting a parent with JVM or pyarrow threads is harmless. spawn elsewhere."""
    return get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _stored_summary(out: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a previous complete run with the same params, or None."""
    marker = out / _MARKER
    if not marker.is_file() or not (out / _GROUND_TRUTH).is_file():
        return None
    try:
        stored = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if stored.get("params") != params:
        return None
    files = pq.read_table(out / _GROUND_TRUTH, columns=["file"]).column("file").to_pylist()
    if len(files) != params["n"] or not all((out / f).is_file() for f in files):
        return None
    return dict(stored["summary"], skipped=True)


def _clear_previous(out: Path) -> None:
    """Removes a previous run's marker, table and generated image files (only names this module writes)."""
    for name in (_MARKER, _GROUND_TRUTH):
        (out / name).unlink(missing_ok=True)
    images = out / _IMAGES
    if images.is_dir():
        for entry in images.iterdir():
            if _FILE_RE.match(entry.name):
                entry.unlink()


def generate_scenes(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    size: int = 128,
    workers: int | None = None,
    png_fraction: float = 0.2,
    dup_fraction: float = 0.12,
    similar_fraction: float = 0.08,
) -> dict[str, Any]:
    """Generates ``n`` image files with ground truth under ``out_dir``.

    About ``(1 - dup_fraction - similar_fraction) * n`` files are base scenes; the rest are near-duplicate
    copies (1-3 per chosen base, distinct transforms) and relayouts (1-3 per chosen base: same objects,
    new layout). A re-run with the same parameters whose outputs are all present returns the stored
    summary (with ``skipped=True``) without touching any file; otherwise previous outputs are replaced.

    Args:
        out_dir: output directory (created if missing).
        n: total number of image files, >= 1.
        seed: seed of the plan and of every item's random stream.
        size: side in pixels of rendered scenes (copies may differ after resize/crop).
        workers: worker processes; default ``os.cpu_count()``; 1 runs in-process.
        png_fraction: share of scenes written as PNG (the rest JPEG quality 90).
        dup_fraction: share of files that are near-duplicate copies.
        similar_fraction: share of files that are relayouts ("similar" scenes).

    Returns:
        summary dict: n_images, n_base, n_copies, n_relayouts, n_dup_groups, n_similar_groups, n_png,
        n_jpeg, workers, seconds, skipped.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    if not (
        0 <= png_fraction <= 1
        and dup_fraction >= 0
        and similar_fraction >= 0
        and dup_fraction + similar_fraction <= 0.5
    ):
        raise ValueError("fractions must be in [0, 1] with dup_fraction + similar_fraction <= 0.5")
    start = time.perf_counter()
    out = Path(out_dir)
    params = {
        "n": n,
        "seed": seed,
        "size": size,
        "png_fraction": png_fraction,
        "dup_fraction": dup_fraction,
        "similar_fraction": similar_fraction,
        "version": GENERATOR_VERSION,
    }
    stored = _stored_summary(out, params)
    if stored is not None:
        return stored

    _clear_previous(out)
    (out / _IMAGES).mkdir(parents=True, exist_ok=True)
    items = plan_items(n, seed, png_fraction, dup_fraction, similar_fraction)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        rows = _make_chunk(items, seed, size, str(out))
    else:
        # Several chunks per worker balance load; chunks are returned in order, so rows stay sorted.
        chunk = max(1, min(256, math.ceil(n / (workers * 6))))
        chunks = [items[i : i + chunk] for i in range(0, n, chunk)]
        with ProcessPoolExecutor(workers, mp_context=_mp_context()) as pool:
            parts = pool.map(_make_chunk, chunks, [seed] * len(chunks), [size] * len(chunks), [str(out)] * len(chunks))
            rows = [row for part in parts for row in part]

    table = pa.Table.from_pylist(rows, schema=GROUND_TRUTH_SCHEMA)
    tmp = out / (_GROUND_TRUTH + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(out / _GROUND_TRUTH)

    kinds = [it.kind for it in items]
    n_png = sum(r["file"].endswith(".png") for r in rows)
    summary = {
        "n_images": n,
        "n_base": kinds.count("base"),
        "n_copies": kinds.count("copy"),
        "n_relayouts": kinds.count("relayout"),
        "n_dup_groups": len({it.dup_group for it in items if it.dup_group is not None}),
        "n_similar_groups": len({it.similar_group for it in items if it.similar_group is not None}),
        "n_png": n_png,
        "n_jpeg": n - n_png,
        "workers": workers,
        "seconds": round(time.perf_counter() - start, 3),
        "skipped": False,
    }
    (out / _MARKER).write_text(json.dumps({"params": params, "summary": summary}, indent=2, sort_keys=True))
    return summary
