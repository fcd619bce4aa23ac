"""Tests of the synthetic scene generator (lakelens.scenes): determinism, ground truth, planted groups."""

from __future__ import annotations

import hashlib
import io
import re
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lakelens.scenes import COLOURS, SHAPES, SIZES, generate_scenes
from lakelens.scenes.background import BACKGROUND_FAMILIES, make_background
from lakelens.scenes.captions import make_caption
from lakelens.scenes.render import render_layout, render_scene
from lakelens.scenes.shapes import class_index
from lakelens.scenes.transforms import TRANSFORM_KINDS, apply_transform

MAIN_N = 300
TRANSFORM_NAME = {
    "jpeg": r"jpeg_q\d+",
    "resize": r"resize_\d\.\d\d",
    "crop": r"crop_0\.\d\d",
    "brightness": r"brightness_[+-]0\.\d\d",
    "rotate": r"rotate_-?\d\.\d",
}


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "ground_truth.parquet").to_pylist()


def _file_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "images").iterdir())}


@pytest.fixture(scope="module")
def main_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[dict]]:
    out = tmp_path_factory.mktemp("scenes_main")
    summary = generate_scenes(out, n=MAIN_N, seed=11, workers=2)
    return out, summary, _rows(out)


def test_same_seed_is_byte_identical_whatever_the_workers(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate_scenes(a, n=60, seed=5, workers=1)
    generate_scenes(b, n=60, seed=5, workers=2)
    assert _rows(a) == _rows(b)
    files_a = _file_bytes(a)
    assert len(files_a) == 60
    assert files_a == _file_bytes(b)


def test_different_seed_differs(tmp_path: Path) -> None:
    generate_scenes(tmp_path / "a", n=40, seed=5, workers=1)
    generate_scenes(tmp_path / "b", n=40, seed=6, workers=1)
    ids_a = {r["image_id"] for r in _rows(tmp_path / "a")}
    ids_b = {r["image_id"] for r in _rows(tmp_path / "b")}
    assert not ids_a & ids_b
    assert [r["caption"] for r in _rows(tmp_path / "a")] != [r["caption"] for r in _rows(tmp_path / "b")]


def test_counts_and_summary(main_set: tuple[Path, dict, list[dict]]) -> None:
    out, summary, rows = main_set
    assert len(rows) == MAIN_N == summary["n_images"]
    assert len(list((out / "images").iterdir())) == MAIN_N
    assert summary["n_base"] + summary["n_copies"] + summary["n_relayouts"] == MAIN_N
    assert summary["n_copies"] == round(0.12 * MAIN_N)
    assert summary["n_relayouts"] == round(0.08 * MAIN_N)
    assert sum(r["transform"] == "original" for r in rows) == summary["n_base"]
    assert sorted(r["file"] for r in rows) == [r["file"] for r in rows]


def test_ground_truth_matches_files(main_set: tuple[Path, dict, list[dict]]) -> None:
    out, _, rows = main_set
    for r in rows:
        data = (out / r["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["image_id"]
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (r["width"], r["height"])
            assert im.format == ("PNG" if r["file"].endswith(".png") else "JPEG")
        n = len(r["labels"])
        assert 1 <= n <= 4
        assert len(r["colours"]) == len(r["sizes"]) == len(r["boxes"]) == n

        mask = np.asarray(Image.open(io.BytesIO(r["mask"])))
        assert mask.shape == (r["height"], r["width"]) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) - {0} == {class_index(s) for s in r["labels"]}

        union = np.zeros_like(mask, dtype=bool)
        for shape, b in zip(r["labels"], r["boxes"], strict=True):
            assert b["x0"] >= 0 and b["y0"] >= 0 and b["w"] > 0 and b["h"] > 0
            assert b["x0"] + b["w"] <= r["width"] and b["y0"] + b["h"] <= r["height"]
            window = mask[b["y0"] : b["y0"] + b["h"], b["x0"] : b["x0"] + b["w"]]
            # A visible box is tight: its border rows and columns each touch the object's class.
            hit = window == class_index(shape)
            assert hit[0].any() and hit[-1].any() and hit[:, 0].any() and hit[:, -1].any()
            union[b["y0"] : b["y0"] + b["h"], b["x0"] : b["x0"] + b["w"]] = True
        assert not (mask[~union] > 0).any()

        for shape, colour, size in zip(r["labels"], r["colours"], r["sizes"], strict=True):
            assert f"{size} {colour} {shape}" in r["caption"]


def test_vocabulary_and_formats_occur(main_set: tuple[Path, dict, list[dict]]) -> None:
    _, _, rows = main_set
    assert len(SHAPES) >= 6 and len(COLOURS) >= 6 and set(SIZES) == {"small", "large"}
    assert len({s for r in rows for s in r["labels"]}) >= 6
    assert len({c for r in rows for c in r["colours"]}) >= 6
    assert {s for r in rows for s in r["sizes"]} == {"small", "large"}
    suffixes = {r["file"].rsplit(".", 1)[1] for r in rows}
    assert suffixes == {"jpg", "png"}
    png_share = np.mean([r["file"].endswith(".png") for r in rows if r["transform"] == "original"])
    assert 0.1 < png_share < 0.3


def test_near_duplicate_groups(main_set: tuple[Path, dict, list[dict]]) -> None:
    _, _, rows = main_set
    groups: dict[int, list[dict]] = {}
    for r in rows:
        if r["dup_group"] is not None:
            groups.setdefault(r["dup_group"], []).append(r)
    assert groups
    kinds = set()
    for members in groups.values():
        assert 2 <= len(members) <= 4
        originals = [m for m in members if m["transform"] == "original"]
        assert len(originals) == 1
        assert {m["scene_id"] for m in members} == {originals[0]["scene_id"]}
        copies = [m for m in members if m["transform"] != "original"]
        copy_kinds = [m["transform"].split("_")[0] for m in copies]
        assert len(set(copy_kinds)) == len(copy_kinds)
        assert len({m["image_id"] for m in members}) == len(members)
        for m, kind in zip(copies, copy_kinds, strict=True):
            assert re.fullmatch(TRANSFORM_NAME[kind], m["transform"])
            assert sorted(m["labels"]) == sorted(originals[0]["labels"])
        kinds.update(copy_kinds)
    assert kinds == set(TRANSFORM_KINDS)
    ungrouped = [r for r in rows if r["dup_group"] is None]
    assert all(r["transform"] in ("original", "relayout") for r in ungrouped)


def test_geometry_of_copies(main_set: tuple[Path, dict, list[dict]]) -> None:
    _, _, rows = main_set
    for r in rows:
        kind = r["transform"].split("_")[0]
        if kind == "resize":
            scale = float(r["transform"].split("_")[1])
            assert r["width"] == r["height"] == round(128 * scale)
        elif kind == "crop":
            assert 0.8 * 128 <= r["width"] < 128 and 0.8 * 128 <= r["height"] < 128
        else:
            assert r["width"] == r["height"] == 128


def test_similar_groups_share_objects(main_set: tuple[Path, dict, list[dict]]) -> None:
    _, _, rows = main_set
    groups: dict[int, list[dict]] = {}
    for r in rows:
        if r["similar_group"] is not None:
            groups.setdefault(r["similar_group"], []).append(r)
    assert groups
    for members in groups.values():
        assert len(members) >= 2
        assert sorted(m["transform"] for m in members)[-1] == "relayout"
        assert sum(m["transform"] == "original" for m in members) == 1
        multisets = {tuple(sorted(zip(m["labels"], m["colours"], m["sizes"], strict=True))) for m in members}
        assert len(multisets) == 1
        assert len({m["image_id"] for m in members}) == len(members)


def test_idempotent_rerun_does_not_rewrite(tmp_path: Path) -> None:
    first = generate_scenes(tmp_path, n=30, seed=2, workers=1)
    assert first["skipped"] is False
    files = sorted(tmp_path.rglob("*"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    start = time.perf_counter()
    again = generate_scenes(tmp_path, n=30, seed=2, workers=2)
    assert time.perf_counter() - start < 1.0
    assert again["skipped"] is True
    assert {**again, "skipped": False} == first
    assert sorted(tmp_path.rglob("*")) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    # A missing image or a changed parameter forces a fresh run that replaces the old outputs.
    (tmp_path / _rows(tmp_path)[0]["file"]).unlink()
    assert generate_scenes(tmp_path, n=30, seed=2, workers=1)["skipped"] is False
    assert generate_scenes(tmp_path, n=20, seed=2, workers=1)["skipped"] is False
    assert len(list((tmp_path / "images").iterdir())) == 20


def test_caption_grammar() -> None:
    assert make_caption([("circle", "red", "small", 10.0, 50.0)]) == "a small red circle"
    two = [("square", "blue", "large", 90.0, 40.0), ("circle", "red", "small", 10.0, 50.0)]
    assert make_caption(two) == "a small red circle left of a large blue square"
    stacked = [("star", "green", "small", 50.0, 20.0), ("cross", "cyan", "large", 55.0, 100.0)]
    assert make_caption(stacked) == "a small green star above a large cyan cross"
    rising = [("star", "green", "small", 50.0, 100.0), ("cross", "cyan", "large", 55.0, 20.0)]
    assert make_caption(rising) == "a small green star below a large cyan cross"


def test_render_scene_invariants() -> None:
    for i in range(40):
        scene = render_scene(np.random.default_rng([1, i]), 128)
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 4
        lut = np.array([0] + [class_index(o.shape) for o in scene.objects], dtype=np.uint8)
        assert np.array_equal(lut[scene.instance], scene.class_mask)
        for j, obj in enumerate(scene.objects):
            assert (scene.instance == j + 1).sum() > 0.5 * obj.radius**2
            lo, hi = SIZES[obj.size]
            assert lo <= obj.radius <= hi
        again = render_scene(np.random.default_rng([1, i]), 128)
        assert np.array_equal(again.image, scene.image)


def test_render_layout_keeps_objects_and_moves_them() -> None:
    scene = render_scene(np.random.default_rng([2, 3]), 128)
    moved = render_layout(np.random.default_rng([2, 4]), scene.objects, 128)
    key = [(o.shape, o.colour, o.size) for o in scene.objects]
    assert [(o.shape, o.colour, o.size) for o in moved.objects] == key
    assert [(o.cx, o.cy) for o in moved.objects] != [(o.cx, o.cy) for o in scene.objects]
    assert not np.array_equal(moved.image, scene.image)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_transforms_keep_masks_consistent(kind: str) -> None:
    scene = render_scene(np.random.default_rng([9, 1]), 128)
    centres = np.array([[o.cx, o.cy] for o in scene.objects])
    rng = np.random.default_rng(0)
    t = apply_transform(kind, rng, scene.image, scene.class_mask, scene.instance, centres)
    assert re.fullmatch(TRANSFORM_NAME[kind], t.name)
    assert t.image.shape[:2] == t.class_mask.shape == t.instance.shape
    lut = np.array([0] + [class_index(o.shape) for o in scene.objects], dtype=np.uint8)
    assert np.array_equal(lut[t.instance], t.class_mask)
    assert not np.array_equal(t.image, scene.image)
    if kind == "rotate":
        corners = t.image[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.min() > 20
    if kind == "jpeg":
        assert t.encoded is not None and t.encoded[:2] == b"\xff\xd8"


def test_backgrounds_are_muted() -> None:
    rng = np.random.default_rng(0)
    for family in BACKGROUND_FAMILIES:
        bg = make_background(rng, 96, 128, family)
        assert bg.shape == (96, 128, 3) and bg.dtype == np.uint8
        spread = bg.astype(int).max(axis=2) - bg.astype(int).min(axis=2)
        assert np.mean(spread) < 45
        assert bg.std() > 1.0
