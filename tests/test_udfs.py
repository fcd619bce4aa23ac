"""The Spark-free predict cores of the model UDFs, with the bundled models on scenes they never saw."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pandas as pd
import pytest
import torch
from images import encode
from PIL import Image

from lakelens.config import ANNOTATE_TASKS
from lakelens.scenes import generate_scenes
from lakelens.tasks import TASKS
from models.data import Preprocessing, to_tensor_array
from models.registry import BUNDLED, load_model, read_entry
from models.vocabulary import Vocabulary
from udfs.batching import rebatch, run_guarded
from udfs.caption import CaptionPredictor
from udfs.classify import ClassifyPredictor
from udfs.detect import DetectPredictor
from udfs.embed import EmbedPredictor
from udfs.factory import ModelUdfSpec, make_model_udf, predictor_class, udf_schema
from udfs.predictor import concat_rows, predict_frame, predict_frames, predict_tasks
from udfs.runtime import cached_model, pick_device
from udfs.segment import SegmentPredictor

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scene_bytes(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Ten fresh scenes, plus one of them stretched to 200 x 150 (boxes and masks must follow the image's size)."""
    folder = tmp_path_factory.mktemp("udf-scenes")
    generate_scenes(folder, n=10, seed=91, workers=1)
    files = pd.read_parquet(folder / "ground_truth.parquet").file
    blobs = [(folder / f).read_bytes() for f in files]
    stretched = Image.open(io.BytesIO(blobs[0])).convert("RGB").resize((200, 150), Image.BILINEAR)
    return [*blobs, encode(stretched, "PNG")]


def frame_of(blobs: list, errors: list | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {"image_id": [f"id{i}" for i in range(len(blobs))], "bytes": blobs, "error": errors or [None] * len(blobs)}
    )


def bundled(predictor_class, name: str, **options):
    model, manifest = load_model(BUNDLED, name)
    return predictor_class(model, manifest, CPU, batch_size=4, **options), model, manifest


def pixels_of(blobs: list[bytes], manifest) -> torch.Tensor:
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    return torch.from_numpy(np.stack([to_tensor_array(b, prep) for b in blobs]))


def test_rebatch_gives_model_sized_batches_in_order() -> None:
    frames = [pd.DataFrame({"x": range(a, b)}) for a, b in ((0, 3), (3, 8), (8, 8), (8, 9))]
    out = list(rebatch(frames, 4))
    assert [len(f) for f in out] == [4, 4, 1]
    pd.testing.assert_frame_equal(pd.concat(out, ignore_index=True), pd.DataFrame({"x": range(9)}))


def test_run_guarded_blames_only_the_rows_that_fail() -> None:
    def run(items):
        if "bad" in items:
            raise ValueError("poisoned")
        return [s.upper() for s in items]

    out = run_guarded(run, ["a", "b", "bad", "c", "d"])
    assert [o if isinstance(o, str) else "FAIL" for o in out] == ["A", "B", "FAIL", "C", "D"]
    assert out[2].reason == "model failed: ValueError: poisoned"


def test_run_guarded_retries_out_of_memory_on_smaller_batches() -> None:
    sizes = []

    def run(items):
        sizes.append(len(items))
        if len(items) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [i * 10 for i in items]

    assert run_guarded(run, list(range(6))) == [0, 10, 20, 30, 40, 50]
    assert sizes == [6, 3, 1, 2, 3, 1, 2]


def test_device_is_the_tasks_gpu_then_any_visible_gpu_then_the_cpu(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert pick_device(["1"], cuda_available=True) == torch.device("cuda", 1)
    assert pick_device(["3"], cuda_available=True) == torch.device("cuda", 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pick_device(["2"], cuda_available=True) == torch.device("cuda", 2)
    assert pick_device([], cuda_available=True) == torch.device("cuda", 0)
    assert pick_device(["0"], cuda_available=False) == CPU


def test_every_configured_task_has_a_predictor() -> None:
    assert tuple(TASKS) == ANNOTATE_TASKS


def test_each_declared_task_s_predictor_fills_its_table_and_takes_its_options() -> None:
    for name, task in TASKS.items():
        predictor = predictor_class(name)
        written_by_the_core = {"image_id", "error", "model", "model_version"}
        columns = {c for table in task.tables for c in udf_schema(table).names}
        assert set(predictor.outputs) == columns - written_by_the_core, name
        assert set(task.options) <= set(inspect.signature(predictor.configure).parameters), name


def test_embed_gives_the_models_unit_vectors(scene_bytes) -> None:
    predictor, model, manifest = bundled(EmbedPredictor, "embedder")
    out = predict_frame(predictor, frame_of(scene_bytes))
    assert out.columns.tolist() == ["image_id", "vector", "error", "model", "model_version"]
    assert out.error.isna().all() and set(out.model) == {"embedder"} and set(out.model_version) == {"v2"}
    vectors = np.stack(out.vector)
    assert vectors.dtype == np.float32 and vectors.shape == (11, manifest.arch_args["dim"])
    with torch.no_grad():
        expected = model(pixels_of(scene_bytes, manifest))["vectors"].numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_classify_keeps_the_labels_above_threshold_best_first(scene_bytes) -> None:
    predictor, model, manifest = bundled(ClassifyPredictor, "classifier", top_k=3, threshold=0.5)
    out = predict_frame(predictor, frame_of(scene_bytes))
    with torch.no_grad():
        scores = model(pixels_of(scene_bytes, manifest))["scores"]
    for row, row_scores in zip(out.itertuples(), scores, strict=True):
        ranked = sorted(range(len(row_scores)), key=lambda k: -row_scores[k])
        kept = [manifest.classes[k] for k in ranked[:3] if row_scores[k] >= 0.5]
        assert [d["label"] for d in row.labels] == kept
        assert row.label == manifest.classes[ranked[0]]
        assert row.score == pytest.approx(float(row_scores[ranked[0]]), abs=1e-6)


def test_detect_gives_boxes_in_the_images_own_pixels(scene_bytes) -> None:
    predictor, model, manifest = bundled(DetectPredictor, "detector", min_score=0.3)
    out = predict_frame(predictor, frame_of(scene_bytes))
    found = model.detect(pixels_of(scene_bytes, manifest), 0.3)
    for objects, expected, blob in zip(out.objects, found, scene_bytes, strict=True):
        width, height = Image.open(io.BytesIO(blob)).size
        assert [o["label"] for o in objects] == [manifest.classes[k] for k in expected["labels"].tolist()]
        boxes = np.array([[o["x0"], o["y0"], o["w"], o["h"]] for o in objects]).reshape(-1, 4)
        np.testing.assert_allclose(boxes, expected["boxes"].numpy() * [width, height, width, height], rtol=1e-5)
    assert all(len(objects) >= 1 for objects in out.objects)
    # The stretched copy of scene 0 finds the same objects at the stretched places.
    first, stretched = out.objects.iloc[0], out.objects.iloc[-1]
    assert sorted(o["label"] for o in first) == sorted(o["label"] for o in stretched)


def test_segment_gives_a_png_mask_at_the_images_size_and_class_fractions(scene_bytes) -> None:
    predictor, model, manifest = bundled(SegmentPredictor, "segmenter")
    out = predict_frame(predictor, frame_of(scene_bytes))
    with torch.no_grad():
        small = model.predict_masks(pixels_of(scene_bytes, manifest)).numpy().astype(np.uint8)
    for row, expected, blob in zip(out.itertuples(), small, scene_bytes, strict=True):
        mask = Image.open(io.BytesIO(row.mask))
        assert mask.format == "PNG" and mask.mode == "L"
        assert mask.size == Image.open(io.BytesIO(blob)).size
        values = np.asarray(mask)
        np.testing.assert_array_equal(values, np.asarray(Image.fromarray(expected).resize(mask.size, Image.NEAREST)))
        assert row.mask_classes == manifest.classes
        assert sum(row.fractions.values()) == pytest.approx(1.0)
        assert row.fractions == pytest.approx(
            {manifest.classes[k]: float((values == k).mean()) for k in np.unique(values)}
        )


def test_caption_gives_the_beam_search_sentence_and_its_score(scene_bytes) -> None:
    predictor, model, manifest = bundled(CaptionPredictor, "captioner", beam_size=3)
    out = predict_frame(predictor, frame_of(scene_bytes))
    ids, scores = model.beam_search(pixels_of(scene_bytes, manifest), 3)
    vocabulary = Vocabulary(manifest.vocabulary)
    assert out.caption.tolist() == [vocabulary.decode(row) for row in ids.tolist()]
    np.testing.assert_allclose(out.score, np.exp(scores.numpy()), rtol=1e-5)
    assert ((out.score > 0) & (out.score <= 1)).all()


def test_bad_rows_become_error_rows_and_the_others_are_unchanged(scene_bytes) -> None:
    predictor, _, _ = bundled(EmbedPredictor, "embedder")
    good = scene_bytes[:5]
    truncated = scene_bytes[5][: len(scene_bytes[5]) // 3]
    blobs = [good[0], b"not an image", good[1], None, good[2], truncated, good[3], good[4], good[0]]
    errors = [None, None, None, None, None, None, "decode failed: broken", None, None]
    out = predict_frame(predictor, frame_of(blobs, errors))
    assert out.image_id.tolist() == [f"id{i}" for i in range(9)]
    failed = out.error.notna().tolist()
    assert failed == [False, True, False, True, False, True, True, False, False]
    assert out.error[1].startswith("decode failed") and out.error[3] == "no image bytes"
    assert out.error[5].startswith("decode failed") and out.error[6] == "ingest error: decode failed: broken"
    assert out.vector[failed].isna().all()
    alone = predict_frame(predictor, frame_of(good))
    kept = np.stack(out.vector[[0, 2, 4, 7, 8]])
    np.testing.assert_allclose(kept, np.stack(alone.vector[[0, 1, 2, 4, 0]]), atol=1e-6)


def test_a_row_that_breaks_the_model_fails_alone(scene_bytes) -> None:
    class Fragile(EmbedPredictor):
        def infer(self, batch):
            if any(p.size == (200, 150) for p in batch):
                raise RuntimeError("kernel refused this shape")
            return super().infer(batch)

    model, manifest = load_model(BUNDLED, "embedder")
    out = predict_frame(Fragile(model, manifest, CPU, batch_size=8), frame_of(scene_bytes))
    assert out.error.notna().tolist() == [False] * 10 + [True]
    assert out.error.iloc[-1] == "model failed: RuntimeError: kernel refused this shape"


def test_frames_of_any_size_give_the_same_rows(scene_bytes) -> None:
    predictor, _, _ = bundled(CaptionPredictor, "captioner", beam_size=1)
    whole = frame_of(scene_bytes)
    pieces = [whole.iloc[:1], whole.iloc[1:1], whole.iloc[1:8], whole.iloc[8:]]
    out = pd.concat(predict_frames(predictor, pieces, decode_threads=3, ahead=2), ignore_index=True)
    pd.testing.assert_frame_equal(out, predict_frame(predictor, whole))


def test_one_pass_of_several_tasks_gives_each_task_its_own_rows(scene_bytes) -> None:
    # Batches of one, so that both paths run the models on the same batches and agree bit for bit.
    predictors = {
        "classify": ClassifyPredictor(*load_model(BUNDLED, "classifier"), CPU, batch_size=1),
        "detect": DetectPredictor(*load_model(BUNDLED, "detector"), CPU, batch_size=1),  # 96 pixels: its own decode
        "caption": CaptionPredictor(*load_model(BUNDLED, "captioner"), CPU, batch_size=1, beam_size=1),
    }
    blobs = [*scene_bytes, b"not an image", scene_bytes[2]]
    frame = frame_of(blobs, [None] * 11 + [None, "decode failed: broken"])
    n = len(frame)
    frame["todo_classify"] = [i != 1 for i in range(n)]
    frame["todo_detect"] = [i % 2 == 0 for i in range(n)]
    frame["todo_caption"] = [i % 3 != 1 for i in range(n)]  # row 1: no task at all
    pieces = [frame.iloc[:5], frame.iloc[5:5], frame.iloc[5:]]
    out = concat_rows(list(predict_tasks(predictors, pieces, decode_threads=2, ahead=2)))
    assert out.image_id.tolist() == frame.image_id.tolist()
    for task, predictor in predictors.items():
        asked = frame[f"todo_{task}"].to_numpy()
        expected = predict_frame(predictor, frame.loc[asked, ["image_id", "bytes", "error"]])
        columns = [f"{task}__{c}" for c in expected.columns[1:]]
        mine = out.loc[asked, ["image_id", *columns]].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine.set_axis(expected.columns, axis=1), expected)
        assert out.loc[~asked, columns].isna().all().all(), task
    assert out.loc[11, "classify__error"].startswith("decode failed")
    assert out.loc[12, "detect__error"] == "ingest error: decode failed: broken"


def test_the_udf_function_loads_the_model_once_per_worker(scene_bytes) -> None:
    manifest, weights = read_entry(BUNDLED, "embedder")
    spec = ModelUdfSpec("embed", manifest, weights, batch_size=3)
    annotate = make_model_udf(spec)
    first = pd.concat(annotate(iter([frame_of(scene_bytes[:4])])), ignore_index=True)
    second = pd.concat(annotate(iter([frame_of(scene_bytes[:4])])), ignore_index=True)
    pd.testing.assert_frame_equal(first, second)
    assert cached_model(manifest, weights, CPU) is cached_model(manifest, b"unused: cached", CPU)


def test_a_spec_refuses_a_model_of_the_wrong_kind() -> None:
    manifest, weights = read_entry(BUNDLED, "classifier")
    with pytest.raises(ValueError, match="task embed runs embedder models, but model classifier v1 is a classifier"):
        ModelUdfSpec("embed", manifest, weights)
