"""What every section of the report shares: the page being written and how it shows an image."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakelens.config import Config
from lakelens.figures import RGB, extend_key, png, thumbnail
from lakelens.imaging import decode_rgb
from stages.annotate import configured_manifest

SIDE = 256  # pixels of a sample's longer side
THUMB = 128  # pixels of a group member's or a neighbour's longer side


@dataclass
class Page:
    """What the page shows, gathered from the lake; figures are written as they are made."""

    out: Path
    key: dict[str, RGB] = field(default_factory=dict)  # the page's class colours (``colour_key``)
    sections: list[str] = field(default_factory=list)
    figures: int = 0

    def colours(self, names: Iterable[str]) -> dict[str, RGB]:
        """The page's colour key, first given any of ``names`` it lacks (a class no configured model declares)."""
        self.key = extend_key(self.key, names)
        return self.key

    def figure(self, image, alt: str) -> str:
        """Write ``image`` as the next PNG and return its <img> tag."""
        self.figures += 1
        name = f"figures/{self.figures:04d}.png"
        (self.out / name).write_bytes(png(image))
        return f'<img src="{name}" alt="{html.escape(alt)}" width="{image.width}" height="{image.height}">'


def file_name(uri: str) -> str:
    """The last part of an image's uri (``s3a://b/x/cat.jpg`` -> ``cat.jpg``), its caption under a thumbnail."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def pinned(df: DataFrame, task: str, cfg: Config) -> DataFrame:
    """The rows of the model version the configuration names for ``task``; none if the task is not configured."""
    if task not in cfg.annotate.tasks:
        return df.where(F.lit(False))
    manifest = configured_manifest(cfg, task)
    return df.where((F.col("model") == manifest.name) & (F.col("model_version") == manifest.version))


def rgb_of(data: bytes | None, cfg: Config) -> np.ndarray | None:
    """The decoded pixels uint8 [H, W, 3] of an image's bytes; None for an undecodable image."""
    try:
        return decode_rgb(data, cfg.ingest.max_pixels) if data else None
    except Exception:  # the images table keeps undecodable files as error rows; the report skips them
        return None


def thumb_figure(page: Page, cfg: Config, row, caption: str) -> str:
    """A thumbnail figure of an image row (uri, bytes) with ``caption``; nothing for an undecodable image."""
    rgb = rgb_of(row.bytes, cfg)
    if rgb is None:
        return ""
    return captioned(page, thumbnail(rgb, THUMB)[0], row.uri, caption)


def captioned(page: Page, image, alt: str, caption: str) -> str:
    """``image`` written as the page's next figure, with ``caption`` (HTML) under it."""
    return f"<figure>{page.figure(image, alt)}<figcaption>{caption}</figcaption></figure>"
