"""colourise: grey and tinted images (``lakelens.tint``) in colour, as PNG bytes at the image's own size.

The model sees the image's lightness (CIE L) at its input size and predicts the chroma there; the chroma is resized
to the image's size and put beside the image's own full-size lightness (``models.colour.recombine``), so every
detail of the input stays. A colour image is not coloured: its row has ``kind`` "colour" and no ``png``, and the
annotate stage writes no row for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from lakelens.imaging import decode_rgb
from lakelens.tint import colour_kind
from models.colour import annealed_mean, recombine, rgb_to_lab
from udfs.predictor import Predictor, Prepared, PreprocessingError


@dataclass(frozen=True)
class GreyImage(Prepared):
    """An image to colour: ``pixels`` its lightness [1, S, S] at the model's size, ``lightness`` float32 [H, W] at
    its own; or a colour image (``kind`` "colour"), which is left alone."""

    lightness: np.ndarray | None = None
    kind: str = "grey"


class ColourisePredictor(Predictor):
    """Outputs ``png`` (RGB at the image's width and height; None for a colour image) and ``kind`` (grey, tinted,
    or colour)."""

    outputs = ("png", "kind")

    def configure(self, temperature: float = 0.38) -> None:
        self.temperature = temperature

    def prepare(self, data: bytes) -> GreyImage:
        rgb = decode_rgb(data, self.max_pixels)
        kind = colour_kind(rgb)
        size = (rgb.shape[1], rgb.shape[0])
        if kind == "colour":
            return GreyImage(np.zeros((1, 1, 1), np.float32), size, None, kind)
        try:
            lightness = rgb_to_lab(torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255)[:, :1]
            side = self.prep.size
            small = F.interpolate(lightness, size=(side, side), mode="area" if min(size) >= side else "bilinear")
        except Exception as exc:
            raise PreprocessingError(f"{type(exc).__name__}: {exc}") from exc
        return GreyImage(small[0].numpy(), size, lightness[0, 0].numpy(), kind)

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"png": None, "kind": "colour"} for _ in batch]
        todo = [i for i, item in enumerate(batch) if isinstance(item, GreyImage) and item.kind != "colour"]
        if not todo:
            return rows
        with self.inference():
            logits = self.model(self.to_device([batch[i] for i in todo]))
        chroma = annealed_mean(logits.float(), self.temperature).cpu()
        for i, ab in zip(todo, chroma, strict=True):
            item = batch[i]
            rgb = recombine(torch.from_numpy(item.lightness)[None, None], ab[None])[0]
            pixels = (rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            rows[i] = {"png": buffer.getvalue(), "kind": item.kind}
        return rows
