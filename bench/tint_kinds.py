"""Which photos the colourise task would colour: ``python -m bench.tint_kinds --photos DIR [--photos DIR] [--limit N]``.

Each colour photo as it is, as sepia (the usual sepia matrix, clipped, JPEG 85) and as grey (JPEG 85), judged by
``lakelens.tint.colour_kind``: the counts of grey, tinted and colour for each version. The colour photos should
come out colour (some photos in COCO are black and white: grey), the sepia ones tinted, the grey ones grey.
"""

from __future__ import annotations

import argparse
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from lakelens.imaging import decode_rgb
from lakelens.tint import colour_kind

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def jpeg(rgb: np.ndarray, grey: bool = False) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(rgb)
    (image.convert("L") if grey else image).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", action="append", required=True, help="a folder of colour JPEG photos")
    parser.add_argument("--limit", type=int, default=60, help="photos at most per folder")
    args = parser.parse_args()
    kinds: dict[str, Counter] = {"colour": Counter(), "sepia": Counter(), "grey": Counter()}
    for folder in args.photos:
        for path in sorted(Path(folder).glob("*.jpg"))[: args.limit]:
            rgb = decode_rgb(path.read_bytes())
            sepia = np.clip(rgb.astype(np.float64) @ SEPIA.T, 0, 255).astype(np.uint8)
            kinds["colour"][colour_kind(rgb)] += 1
            kinds["sepia"][colour_kind(decode_rgb(jpeg(sepia)))] += 1
            kinds["grey"][colour_kind(decode_rgb(jpeg(rgb, grey=True)))] += 1
    print(json.dumps({version: dict(counts) for version, counts in kinds.items()}, indent=2))


if __name__ == "__main__":
    main()
