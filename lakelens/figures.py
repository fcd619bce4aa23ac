"""Pictures for the report, drawn with Pillow: thumbnails, detection boxes, mask overlays and a 2-D embedding map.

Every figure colours a class by its name, through one key (``class_colours``) that the report makes for the whole
page: a name keeps its colour in the boxes, the mask overlays, the legends and the map, and from lake to lake.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
ColourKey = Mapping[str, RGB]

# Tableau's ten colours for categories without its grey (kept for the names in NEUTRAL) and its pink (too near its
# purple), and four that stay apart from those: any two differ by a CIELAB distance of 38 or more, and each is 28
# or more from the greys and white, so two classes in one figure never look alike.
PALETTE: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (188, 189, 34), (23, 190, 207), (20, 20, 230), (240, 30, 240), (20, 230, 20), (0, 0, 0),
)  # fmt: skip
NO_LABEL = "(no label)"  # the map's name for an image the classifier has not labelled
# Names that are not classes of a model: fixed greys, never a palette colour.
NEUTRAL: dict[str, RGB] = {"background": (127, 127, 127), NO_LABEL: (190, 190, 190)}


def _home(name: str) -> int:
    """The palette slot a name starts from: a hash of its UTF-8 bytes (hashlib: the same in every process, unlike
    ``hash()``, which Python salts per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % len(PALETTE)


def _slot(home: int, step: int) -> RGB:
    """The ``step``-th colour a name whose home is ``home`` tries: the palette from ``home`` on, round to just before
    it, then colours made from golden-ratio hues (needed only by a key of more names than the palette has)."""
    if step < len(PALETTE):
        return PALETTE[(home + step) % len(PALETTE)]
    k = step - len(PALETTE)
    red, green, blue = colorsys.hsv_to_rgb((0.13 + 0.618034 * k) % 1.0, 0.75 - 0.2 * (k // 7 % 2), 0.85)
    return round(255 * red), round(255 * green), round(255 * blue)


def class_colour(name: str) -> RGB:
    """A name's own colour: its fixed grey if it is in ``NEUTRAL``, else its palette slot by hash.

    A key (``class_colours``) gives this colour to every name in it but one that lost its slot to an earlier name."""
    return NEUTRAL.get(name) or _slot(_home(name), 0)


def class_colours(names: Iterable[str]) -> dict[str, RGB]:
    """A key: one colour per name, never the same for two names, the same for the same set of names in any order.

    The names go in sorted order; each takes its own colour (``class_colour``) unless an earlier name took it, then
    the next free slot of the palette after it. So a name keeps its colour in every figure drawn with one key, and
    in every key of the same set of names: the report keys the whole vocabulary of its models (the classes of the
    detector, segmenter and classifier), not the classes a lake happens to show, so its colours do not change from
    lake to lake.
    """
    return extend_key({}, names)


def extend_key(key: ColourKey, names: Iterable[str]) -> dict[str, RGB]:
    """``key`` with the ``names`` it lacks added as ``class_colours`` adds them; the colours it has stay as they are."""
    out = dict(key)
    used = set(out.values())
    for name in sorted(set(names) - out.keys(), key=lambda n: (n not in NEUTRAL, n)):
        if name in NEUTRAL:  # fixed greys go first: no palette or made colour is grey
            out[name] = NEUTRAL[name]
        else:
            home, step = _home(name), 0
            while _slot(home, step) in used:
                step += 1
            out[name] = _slot(home, step)
        used.add(out[name])
    return out


def _with(key: ColourKey | None, names: Iterable[str]) -> ColourKey:
    """``key`` with any of ``names`` it lacks added (a figure drawn on its own, or a name no model declared)."""
    names = set(names)
    if key is not None and names <= key.keys():
        return key
    return extend_key(key or {}, names)


def _ink(fill: RGB) -> RGB:
    """Black or white, whichever reads better on ``fill`` (white on a light yellow or cyan label would not)."""
    luma = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(rgb: np.ndarray, side: int) -> tuple[Image.Image, float]:
    """The image (uint8 [H, W, 3]) scaled so that its longer side is ``side`` pixels, and the scale applied."""
    image = Image.fromarray(rgb)
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR), scale


def with_boxes(rgb: np.ndarray, objects: Sequence[dict], side: int, key: ColourKey | None = None) -> Image.Image:
    """A thumbnail of ``rgb`` (uint8 [H, W, 3]) with each detected object's box and "label score" in its label's
    colour from ``key`` (by default a key of the objects' labels).

    ``objects`` carry ``label``, ``score`` and ``x0, y0, w, h`` in the image's pixels.
    """
    key = _with(key, (o["label"] for o in objects))
    image, scale = thumbnail(rgb, side)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        box = [obj["x0"] * scale, obj["y0"] * scale, (obj["x0"] + obj["w"]) * scale, (obj["y0"] + obj["h"]) * scale]
        hue = key[obj["label"]]
        draw.rectangle(box, outline=hue, width=2)
        text = f"{obj['label']} {obj['score']:.2f}"
        left, top = box[0], max(0.0, box[1] - 11)
        draw.rectangle(draw.textbbox((left, top), text), fill=hue)
        draw.text((left, top), text, fill=_ink(hue))
    return image


def with_mask(
    rgb: np.ndarray, mask_png: bytes, classes: Sequence[str], side: int, key: ColourKey | None = None,
    alpha: float = 0.5,
) -> Image.Image:  # fmt: skip
    """A thumbnail of ``rgb`` (uint8 [H, W, 3]) with the segmentation mask laid over it: each class but
    ``background`` in its colour from ``key`` (by default a key of ``classes``).

    ``mask_png`` is a one-channel PNG of class indices into ``classes``, of any size (scaled to the thumbnail's).
    """
    key = _with(key, classes)
    image, _ = thumbnail(rgb, side)
    mask = np.asarray(Image.open(io.BytesIO(mask_png)).resize(image.size, Image.NEAREST))
    lut = np.array([key[c] for c in classes] + [NEUTRAL["background"]] * (256 - len(classes)), np.float32)
    base = np.asarray(image, np.float32)
    painted = mask != (classes.index("background") if "background" in classes else 255)
    blended = np.where(painted[..., None], (1 - alpha) * base + alpha * lut[mask], base)
    return Image.fromarray(blended.astype(np.uint8))


SWATCH = 16  # pixels a legend row takes; its swatch is the square 6..16 across, 6..16 down from the row's top


def legend(names: Sequence[str], key: ColourKey | None = None, skip: Sequence[str] = ()) -> Image.Image:
    """Colour swatches with their names, one a row in the order given, leaving out ``skip``: 160 x (16 n + 8)
    pixels, the swatch of row ``i`` centred at (11, 11 + 16 i). Colours from ``key`` (by default a key of
    ``names``)."""
    key = _with(key, names)
    shown = [name for name in names if name not in skip]
    image = Image.new("RGB", (160, SWATCH * len(shown) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row, name in enumerate(shown):
        draw.rectangle([6, 6 + SWATCH * row, 16, 16 + SWATCH * row], fill=key[name])
        draw.text((22, 5 + SWATCH * row), name, fill=(0, 0, 0))
    return image


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``vectors`` ([n, d] -> [n, 2])."""
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE embedding of the rows of ``vectors`` ([n, d] -> [n, 2], n >= 3): neighbours stay neighbours,
    which a linear map (PCA) cannot keep for clusters that differ in many directions. Started from the PCA map and
    seeded, so the same vectors give the same map; the perplexity is at most 30 and below n."""
    from sklearn.manifold import TSNE  # noqa: PLC0415 - scikit-learn is only needed where a report is made

    perplexity = float(min(30, max(1, (len(vectors) - 1) // 3)))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(vectors)


DOT = 2.5  # a map point's radius in pixels
FRAME = (200, 200, 200)  # the map's frame line


def plot_area(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The map's frame (x0, y0, x1, y1) in a scatter of ``size`` (width, height): left of its 170-pixel legend."""
    width, height = size
    return 10, 10, width - 180, height - 10


def map_xy(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Where ``points`` ([n, 2]) are drawn in a scatter of ``size``: pixel centres [n, 2] that keep a margin of
    twice a point's radius inside the frame, so the extreme points are drawn whole and the frame stays whole.
    A coordinate that does not vary is drawn at the middle."""
    x0, y0, x1, y1 = plot_area(size)
    margin = 2 * DOT + 1
    low, high = points.min(axis=0), points.max(axis=0)
    spread = high > low
    unit = np.where(spread, (points - low) / np.where(spread, high - low, 1.0), 0.5)
    return unit * [x1 - x0 - 2 * margin, y1 - y0 - 2 * margin] + [x0 + margin, y0 + margin]


def scatter(
    points: np.ndarray, labels: Sequence[str], key: ColourKey | None = None, size: tuple[int, int] = (720, 540)
) -> Image.Image:
    """A scatter plot of 2-D ``points`` ([n, 2]) coloured by their ``labels`` (n names) from ``key`` (by default a
    key of the labels), with a legend of the labels in sorted order on its right (170 pixels wide)."""
    key = _with(key, labels)
    width, _ = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle(plot_area(size), outline=FRAME)
    for (x, y), label in zip(map_xy(points, size), labels, strict=True):
        draw.ellipse([x - DOT, y - DOT, x + DOT, y + DOT], fill=key[label])
    image.paste(legend(sorted(set(labels)), key), (width - 170, 10))
    return image
