"""Colourisation, the architectures side by side:
``python -m bench.colourise --lake DIR --models NAME [NAME ...] (--coco | --scenes PATTERN) [--out grid.png]``.

Held-out colour images (the lake's COCO val photos, or the scenes whose ``source`` is LIKE ``PATTERN``) are turned
grey (8-bit L, PNG) and coloured again by each registered colouriser through the annotate task's predict core
(``udfs.colourise.ColourisePredictor``: decode, lightness, model at its input size, chroma at the image's size beside
its own lightness, PNG). Per model, at the images' own sizes:

- PSNR (dB) against the original, beside the grey image's own (the floor), and the colourfulness of the outputs
  (Hasler and Suesstrunk) beside the originals' and the grey images' (0);
- images per second of the predict core, and its peak memory: the growth of the process's peak resident size
  over the run, each model in a process of its own (``ru_maxrss``), after the model is loaded.

``--out`` writes a picture grid: per image, grey input, each model's output, original.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import resource
import time

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bench.text_search import coco_rows, scene_rows
from lakelens.config import load_config
from lakelens.imaging import decode_rgb
from lakelens.lake import registry_root
from models.colour import colourfulness, psnr
from models.registry import load_model
from udfs.colourise import ColourisePredictor
from udfs.predictor import predict_frame


def grey_png(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(decode_rgb(data)).convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


def run_model(registry: str, name: str, frame: pd.DataFrame, threads: int) -> dict:
    """In a process of its own: the model's outputs (PNG bytes per row), seconds, and peak memory growth."""
    torch.set_num_threads(threads)
    model, manifest = load_model(registry, name)
    predictor = ColourisePredictor(model, manifest, torch.device("cpu"), batch_size=16)
    predict_frame(predictor, frame.head(4))  # warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    out = predict_frame(predictor, frame)
    seconds = time.perf_counter() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"png": out["png"].tolist(), "kind": out["kind"].tolist(), "error": out["error"].tolist(),
            "seconds": seconds, "peak_growth_mib": grown / 1024, "arch": manifest.architecture,
            "size": manifest.preprocessing["size"]}  # fmt: skip


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255


def grid(rows: list[list[np.ndarray]], height: int = 128) -> Image.Image:
    """A picture grid: one row of images per list, each scaled to ``height``."""
    scaled = [[Image.fromarray(c).resize((max(1, c.shape[1] * height // c.shape[0]), height)) for c in r] for r in rows]
    width = max(sum(i.width for i in r) + 4 * (len(r) - 1) for r in scaled)
    canvas = Image.new("RGB", (width, len(rows) * (height + 4)), (255, 255, 255))
    for y, row in enumerate(scaled):
        x = 0
        for image in row:
            canvas.paste(image, (x, y * (height + 4)))
            x += image.width + 4
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="registered colourisers of the lake's registry")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--coco", action="store_true", help="the lake's COCO val photos")
    which.add_argument("--scenes", metavar="PATTERN", help="scene_truth.source LIKE this")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="the picture grid (PNG)")
    args = parser.parse_args()
    cfg = load_config(overrides=[f"lake.root={args.lake}"])
    rows = coco_rows(cfg).query("split == 'val'") if args.coco else scene_rows(cfg, args.scenes)
    rows = rows.head(args.limit) if args.limit else rows
    frame = pd.DataFrame({"image_id": rows["image_id"], "bytes": [grey_png(b) for b in rows["bytes"]]})
    originals = [decode_rgb(b) for b in rows["bytes"]]
    greys = [np.repeat(decode_rgb(b)[..., :1], 3, axis=2) for b in frame["bytes"]]

    def scores(images: list[np.ndarray]) -> dict:
        pairs = zip(images, originals, strict=True)
        return {
            "psnr": round(float(np.mean([float(psnr(as_tensor(i), as_tensor(o))[0]) for i, o in pairs])), 2),
            "colourfulness": round(float(np.mean([float(colourfulness(as_tensor(i))[0]) for i in images])), 1),
        }

    report = {"images": len(rows), "originals_colourfulness": scores(originals)["colourfulness"],
              "grey": scores(greys)}  # fmt: skip
    outputs = {}
    context = multiprocessing.get_context("spawn")
    for name in args.models:
        with context.Pool(1) as pool:
            found = pool.apply(run_model, (str(registry_root(cfg)), name, frame, args.threads))
        failed = [e for e in found["error"] if e]
        images = [decode_rgb(p) for p in found["png"]]
        outputs[name] = images
        report[name] = {"architecture": found["arch"], "input_size": found["size"], **scores(images),
                        "images_per_s": round(len(frame) / found["seconds"], 2),
                        "peak_memory_growth_mib": round(found["peak_growth_mib"], 1), "errors": len(failed),
                        "not_grey": sum(k == "colour" for k in found["kind"])}  # fmt: skip
    if args.out:
        picked = range(min(6, len(rows)))
        grid([[greys[i], *(outputs[n][i] for n in args.models), originals[i]] for i in picked]).save(args.out)
        report["grid"] = args.out
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
