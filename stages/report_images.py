"""The report's sections of the image-to-image tasks: a colourisation gallery and the lake's most unusual images.

- Colourisation: the lake's grey and tinted images beside their ``colourised`` output; then a few of its colour
  images turned grey and coloured by the configured colouriser (run here, on the driver), beside the original, so a
  reader sees what the model gets right and wrong where the truth is known.
- Unusual images: the most unusual images by the autoencoder (``reconstructions.unusualness``: its error, corrected
  for how simple the image is), each with its worst region boxed and its reconstruction.
"""

from __future__ import annotations

import html
import io

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakelens.config import Config
from lakelens.figures import thumbnail, with_boxes
from lakelens.lake import read_table, registry_root
from lakelens.schemas import ANNOTATE_LEFT_OUT, COLOURISED, IMAGES, RECONSTRUCTIONS
from models.registry import load_model
from stages.annotate import configured_manifest
from stages.report_page import THUMB, Page, captioned, file_name, pinned, rgb_of
from udfs.colourise import ColourisePredictor
from udfs.predictor import predict_frame


def _png_image(data: bytes) -> Image.Image:
    return thumbnail(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), THUMB)[0]


def colour_section(spark: SparkSession, cfg: Config, page: Page, n: int = 6) -> None:
    """``n`` of the lake's grey or tinted images with their colours, and ``n`` of its colour images turned grey and
    coloured again beside the original."""
    if "colourise" not in cfg.annotate.tasks:
        return
    images = read_table(spark, cfg, IMAGES).select("image_id", "uri", "bytes")
    coloured = pinned(read_table(spark, cfg, COLOURISED), "colourise", cfg).where(F.col("error").isNull())
    rows = coloured.select("image_id", "png", "kind").join(images, "image_id").orderBy("image_id").limit(n).collect()
    blocks = []
    for r in rows:
        rgb = rgb_of(r.bytes, cfg)
        if rgb is not None:
            name = html.escape(file_name(r.uri))
            blocks.append(
                f'<div class="row">{captioned(page, thumbnail(rgb, THUMB)[0], r.uri, f"{name} ({r.kind})")}'
                f"{captioned(page, _png_image(r.png), f'{r.uri} coloured', 'coloured')}</div>"
            )
    mine = "".join(blocks) or "<p>No grey or tinted images in the lake.</p>"
    colour = pinned(read_table(spark, cfg, ANNOTATE_LEFT_OUT), "colourise", cfg).where(F.col("task") == "colourise")
    originals = colour.select("image_id").join(images, "image_id").orderBy("image_id").limit(n).collect()
    predictor = _colouriser(cfg) if originals else None
    checks = "".join(_colour_check(cfg, page, predictor, r) for r in originals)
    page.sections.append(
        f"<h2>Colourisation</h2><p>The lake's grey and tinted images, coloured:</p>{mine}"
        f"<p>Colour images of the lake turned grey and coloured again, beside the original:</p>"
        f"{checks or '<p>No colour images in the lake.</p>'}"
    )


def _colouriser(cfg: Config) -> ColourisePredictor:
    """The configured colourise model's predictor on this machine's CPU, with the task's options."""
    manifest = configured_manifest(cfg, "colourise")
    model, _ = load_model(registry_root(cfg), manifest.name, manifest.version)
    return ColourisePredictor(model, manifest, torch.device("cpu"), batch_size=1, max_pixels=cfg.ingest.max_pixels,
                              **cfg.annotate.options["colourise"])  # fmt: skip


def _colour_check(cfg: Config, page: Page, predictor: ColourisePredictor, row) -> str:
    """A colour image of the lake as grey input, the colouriser's output, and the original."""
    rgb = rgb_of(row.bytes, cfg)
    if rgb is None:
        return ""
    grey = Image.fromarray(rgb).convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    out = predict_frame(predictor, pd.DataFrame({"image_id": [row.image_id], "bytes": [buffer.getvalue()]}))
    if out["png"][0] is None:
        return ""
    name = html.escape(file_name(row.uri))
    shown = thumbnail(np.asarray(grey.convert("RGB")), THUMB)[0]
    return (
        f'<div class="row">{captioned(page, shown, "grey", f"{name}: grey")}'
        f"{captioned(page, _png_image(out['png'][0]), 'coloured', 'coloured')}"
        f"{captioned(page, thumbnail(rgb, THUMB)[0], row.uri, 'original')}</div>"
    )


def unusual_section(spark: SparkSession, cfg: Config, page: Page, n: int = 10) -> None:
    """The ``n`` most unusual images, the worst reconstructed region boxed, each beside its reconstruction."""
    if "autoencode" not in cfg.annotate.tasks:
        return
    errors = pinned(read_table(spark, cfg, RECONSTRUCTIONS), "autoencode", cfg).where(F.col("error").isNull())
    worst = errors.orderBy(F.desc("unusualness"), "image_id").limit(n)
    rows = worst.join(read_table(spark, cfg, IMAGES).select("image_id", "uri", "bytes"), "image_id")
    blocks = []
    for rank, r in enumerate(sorted(rows.collect(), key=lambda r: (-r.unusualness, r.image_id)), start=1):
        rgb = rgb_of(r.bytes, cfg)
        if rgb is None:
            continue
        box = {"label": "worst", "score": r.worst_error, **r.worst_region.asDict()}
        name = html.escape(file_name(r.uri))
        said = f"unusualness {r.unusualness:.3f}, error {r.error_per_pixel:.4f}"
        blocks.append(
            f'<div class="row">'
            f"{captioned(page, with_boxes(rgb, [box], THUMB), r.uri, f'#{rank} {name}<br>{said}')}"
            f"{captioned(page, _png_image(r.reconstruction), f'{r.uri} reconstructed', 'reconstruction')}</div>"
        )
    shown = "".join(blocks) or "<p>No reconstructions yet.</p>"
    page.sections.append(
        f"<h2>Most unusual images</h2><p>The images the autoencoder gives back worst for how simple they are "
        f"(unusualness; error: mean squared error per pixel, pixels in [0, 1]), the worst region boxed:</p>{shown}"
    )
