"""Images/s of the annotate UDF against its peers: ``python -m bench.annotate_throughput --images DIR ...``.

On the same image bytes and the same registry model, side by side in one run:

1. ``spark_udf``: the annotate UDF (``udfs.factory.make_model_udf`` through ``mapInPandas``) in Spark, ``local[2]``;
2. ``bare_loop``: one Python process running the same predict core (same decode, batch size, decode threads)
   with as many torch threads as Spark has cores: the practical limit of this machine;
3. ``predict_batch_udf``: ``pyspark.ml.functions.predict_batch_udf`` with the same model and batch size, as a
   hand-written ``predict_fn`` does it: the registry's model as loaded, each image decoded whole; then
   (``..._same_decode``) with the predict core's decode, which reads a large JPEG at reduced scale, and
   (``..._same_core``) with the predict core's decode and its prepared (channels-last) model, so that only the UDF
   machinery differs;
4. ``row_udf``: a row-at-a-time Python UDF (one image per model call, whole decode), on a sample of the rows.

Spark runs end in a ``noop`` sink, so no write is timed; each is timed after a warm-up on a few rows of every
partition (so every Python worker has started and loaded its model; the annotate UDF's first, cold run is printed
too). Also
printed: the time split of the bare loop (decode, preprocess, model, as sequential stages), Spark's own cost (an
identity ``mapInPandas`` that only moves the bytes), the model's FLOPs per image, and this machine's matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql.types import ArrayType, FloatType
from torch.utils.flop_counter import FlopCounterMode

from lakelens.config import SCENES_CONFIG, load_config
from lakelens.imaging import decode_rgb, decode_rgb_for
from lakelens.spark import build_session
from lakelens.tasks import TASKS
from models.data import preprocess_rgb
from models.registry import BUNDLED, load_model, read_entry
from udfs.factory import ModelUdfSpec, make_model_udf, predictor_class, udf_schema
from udfs.predictor import Prepared, predict_frame
from udfs.runtime import cached_model

SUFFIXES = {".jpg", ".jpeg", ".png"}


def image_rows(folders: list[str]) -> pd.DataFrame:
    """(image_id, bytes, error) of every JPEG/PNG under ``folders``, one row per distinct content."""
    rows = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in SUFFIXES:
                data = path.read_bytes()
                rows[hashlib.sha256(data).hexdigest()] = data
    return pd.DataFrame({"image_id": list(rows), "bytes": list(rows.values()), "error": [None] * len(rows)})


def dense(task: str, row: dict, classes: list[str]) -> np.ndarray:
    """One float32 array per annotated row, the form predict_batch_udf returns: the vector, the class fractions,
    the score, or the number of objects."""
    if task == "embed":
        return np.asarray(row["vector"], np.float32)
    if task == "segment":
        return np.asarray([row["fractions"].get(c, 0.0) for c in classes], np.float32)
    if task == "detect":
        return np.asarray([len(row["objects"])], np.float32)
    return np.asarray([row["score"]], np.float32)


def full_decode(predictor, data: bytes) -> Prepared:
    """The plain decode a hand-written UDF does: the whole image, then the model's resize and normalisation."""
    rgb = decode_rgb(data)
    return Prepared(preprocess_rgb(rgb, predictor.prep), (rgb.shape[1], rgb.shape[0]))


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def stage_split(predictor, blobs: list[bytes]) -> dict[str, float]:
    """Milliseconds per image of decode, preprocess and model, run as separate sequential stages."""
    decoded: list[tuple[np.ndarray, tuple[int, int]]] = []
    decode_s = timed(lambda: decoded.extend(decode_rgb_for(b, predictor.prep.size) for b in blobs))
    pixels: list = []
    prep_s = timed(lambda: pixels.extend(preprocess_rgb(rgb, predictor.prep) for rgb, _ in decoded))
    # The image's own size, not the decoded one: masks and boxes are made at full size, as in the UDF.
    prepared = [Prepared(p, full) for p, (_, full) in zip(pixels, decoded, strict=True)]
    size = predictor.batch_size

    def run_model() -> None:
        with torch.inference_mode():
            for start in range(0, len(prepared), size):
                predictor.infer(prepared[start : start + size])

    model_s = timed(run_model)
    n = len(blobs)
    return {"decode_ms": 1e3 * decode_s / n, "preprocess_ms": 1e3 * prep_s / n, "model_ms": 1e3 * model_s / n}


def model_flops(model: torch.nn.Module, size: int, channels: int) -> float:
    """FLOPs of one forward pass on one image (torch's flop counter: 2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, channels, size, size))
    return float(counter.get_total_flops())


def matmul_flops_per_s(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """float32 matmul FLOP/s of this machine with ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    seconds = timed(lambda: [a @ b for _ in range(repeats)])
    torch.set_num_threads(before)
    return 2 * n**3 * repeats / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", action="append", required=True, help="folder of images (repeatable)")
    parser.add_argument("--task", choices=list(TASKS), default="embed")
    parser.add_argument("--registry", default=str(BUNDLED), help="registry holding the model (default: bundled)")
    parser.add_argument("--model", help="model name (default: the task's bundled scene model, conf/scenes.yaml)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N] and the bare loop's torch threads")
    parser.add_argument("--decode-threads", type=int, default=1)
    parser.add_argument("--row-sample", type=int, default=300, help="rows for the row-at-a-time UDF")
    args = parser.parse_args()

    task_predictor = predictor_class(args.task)
    name = args.model or load_config([SCENES_CONFIG]).annotate.models[args.task]
    manifest, weights = read_entry(args.registry, name)
    model = cached_model(manifest, weights, torch.device("cpu"))  # as the UDF prepares it
    rows = image_rows(args.images)
    n = len(rows)
    options = {"beam_size": 1} if args.task == "caption" else {}
    result: dict = {"task": args.task, "model": f"{manifest.name} {manifest.version}", "images": n,
                    "batch_size": args.batch_size, "cores": args.cores}  # fmt: skip

    class UserPredictor(task_predictor):
        """The predict core as a hand-written predict_fn feeds a model: a plain (contiguous) batch."""

        def to_device(self, batch):
            return torch.from_numpy(np.stack([p.pixels for p in batch]))

    # 2. The bare loop, and its time split.
    torch.set_num_threads(args.cores)
    cpu = torch.device("cpu")
    predictor = task_predictor(model, manifest, cpu, args.batch_size, **options)
    predict_frame(predictor, rows.head(args.batch_size), args.decode_threads)
    bare_s = timed(lambda: predict_frame(predictor, rows, args.decode_threads))
    result["bare_loop_images_per_s"] = n / bare_s
    result["bare_loop_split"] = stage_split(predictor, rows.bytes.tolist())
    flops = model_flops(model, predictor.prep.size, predictor.prep.channels)
    result["model_gflops_per_image"] = flops / 1e9
    machine = matmul_flops_per_s(args.cores)
    result["matmul_gflops_per_s"] = machine / 1e9
    result["model_ms_at_matmul_peak"] = 1e3 * flops / machine

    # 1, 3, 4 in Spark.
    with tempfile.TemporaryDirectory(prefix="lakelens-bench-") as tmp:
        cfg = load_config(overrides=[f"spark.master=local[{args.cores}]", f"lake.root={tmp}/lake"])
        spark = build_session(cfg)
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
        source = f"{tmp}/images.parquet"
        spark.createDataFrame(rows, "image_id string, bytes binary, error string").repartition(
            4 * args.cores
        ).write.parquet(source)
        images = spark.read.parquet(source).cache()
        images.count()

        spec = ModelUdfSpec(args.task, manifest, spark.sparkContext.broadcast(weights), args.batch_size,
                            args.decode_threads, options=options)  # fmt: skip
        schema = udf_schema(TASKS[args.task].table)

        def spark_udf(frame) -> None:
            frame.mapInPandas(make_model_udf(spec), schema).write.format("noop").mode("overwrite").save()

        def identity(frame) -> None:
            def passthrough(frames):
                for f in frames:
                    yield pd.DataFrame({"image_id": f.image_id, "n": f.bytes.map(len)})

            frame.mapInPandas(passthrough, "image_id string, n long").write.format("noop").mode("overwrite").save()

        def batch_udf(frame, same_decode: bool = False, same_model: bool = False) -> None:
            from pyspark.ml.functions import predict_batch_udf

            def make_predict_fn():
                if same_model:
                    local = task_predictor(cached_model(manifest, weights, cpu), manifest, cpu, args.batch_size,
                                            **options)  # fmt: skip
                else:
                    local_model, _ = load_model(args.registry, name)
                    local = UserPredictor(local_model, manifest, cpu, args.batch_size, **options)
                prepare = local.prepare if same_decode else partial(full_decode, local)

                def predict(blobs: np.ndarray) -> np.ndarray:
                    # What a user writes: decode the batch, run the model, one array per row.
                    rows = local.infer([prepare(bytes(b)) for b in blobs])
                    return np.stack([dense(args.task, row, manifest.classes) for row in rows])

                return predict

            udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=args.batch_size)
            frame.select(udf("bytes").alias("p")).write.format("noop").mode("overwrite").save()

        def row_udf(frame) -> None:
            from pyspark.sql.functions import udf

            built: dict = {}

            def one(data: bytes) -> list[float]:
                if "predictor" not in built:  # once per task, not per row
                    local_model, local_manifest = load_model(args.registry, name)
                    built["predictor"] = UserPredictor(local_model, local_manifest, cpu, 1, **options)
                local = built["predictor"]
                row = local.infer([full_decode(local, bytes(data))])[0]
                return dense(args.task, row, local.manifest.classes).tolist()

            frame.select(udf(one, ArrayType(FloatType()))("bytes").alias("p")).write.format("noop").mode(
                "overwrite"
            ).save()

        # A few rows of every partition: each Python worker starts, imports torch and loads its model before the
        # timed runs (what a long job pays once per executor).
        warm = images.sample(fraction=0.05, seed=0)
        result["spark_udf_cold_images_per_s"] = n / timed(lambda: spark_udf(images))
        for run in (spark_udf, identity, batch_udf):
            run(warm)
        result["spark_udf_images_per_s"] = n / timed(lambda: spark_udf(images))
        result["spark_identity_images_per_s"] = n / timed(lambda: identity(images))
        result["predict_batch_udf_images_per_s"] = n / timed(lambda: batch_udf(images))
        result["predict_batch_udf_same_decode_images_per_s"] = n / timed(lambda: batch_udf(images, True))
        batch_udf(warm, True, True)
        result["predict_batch_udf_same_core_images_per_s"] = n / timed(lambda: batch_udf(images, True, True))
        sample = images.limit(args.row_sample).cache()
        sample.count()
        result["row_udf_rows"] = args.row_sample
        result["row_udf_images_per_s"] = args.row_sample / timed(lambda: row_udf(sample))
        spark.stop()

    result["spark_udf_vs_bare_loop"] = result["spark_udf_images_per_s"] / result["bare_loop_images_per_s"]
    result["spark_udf_vs_predict_batch_udf"] = (
        result["spark_udf_images_per_s"] / result["predict_batch_udf_images_per_s"]
    )
    result["spark_udf_vs_predict_batch_udf_same_decode"] = (
        result["spark_udf_images_per_s"] / result["predict_batch_udf_same_decode_images_per_s"]
    )
    result["spark_udf_vs_predict_batch_udf_same_core"] = (
        result["spark_udf_images_per_s"] / result["predict_batch_udf_same_core_images_per_s"]
    )
    result["spark_udf_vs_row_udf"] = result["spark_udf_images_per_s"] / result["row_udf_images_per_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
