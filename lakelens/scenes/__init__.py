"""Synthetic scenes: deterministic images of coloured shapes with full ground truth.

The generated set is the project's embedded default data: labels, boxes, masks, captions and planted
near-duplicate / similar groups train and score every model and the near-duplicate search.
"""

from lakelens.scenes.generate import generate_scenes
from lakelens.scenes.shapes import COLOURS, SCENE_MASK_CLASSES, SHAPES, SIZES

__all__ = ["COLOURS", "SCENE_MASK_CLASSES", "SHAPES", "SIZES", "generate_scenes"]
