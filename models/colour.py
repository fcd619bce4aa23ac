"""Colour for the colourisers: sRGB <-> CIE Lab (D65) in torch, and the chroma (a, b) quantised into bins.

A colouriser predicts, per pixel, a distribution over :data:`AB_BINS` chroma bins (classification, Zhang et al.
2016: a plain L2 on a and b regresses to the mean of the plausible colours, which is grey-brown); the training
target of a pixel is its true chroma softly spread over the 5 nearest bins (:func:`nearest_bins`), and rare bins
are weighed up (:func:`rebalancing_weights`) so that saturated colours are not drowned by the common desaturated
ones. A prediction becomes chroma by the annealed mean (:func:`annealed_mean`) and an RGB image by putting that
chroma beside the input's own lightness L (:func:`recombine`), at the input's size: every detail of the input stays.

Shapes: rgb float32 [N, 3, H, W] in [0, 1]; lab float32 [N, 3, H, W] (L in [0, 100], a and b about [-110, 110]).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

# The chroma grid: bins of AB_STEP on a and b, centres from -AB_RANGE to AB_RANGE (every sRGB colour's chroma lies
# inside: |a| <= 98.3, |b| <= 107.9).
AB_STEP = 10.0
AB_RANGE = 110.0
_CENTRES = torch.arange(-AB_RANGE, AB_RANGE + AB_STEP / 2, AB_STEP)
AB_BINS = len(_CENTRES) ** 2  # 23 x 23 = 529
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(dim=1)  # D65 as the matrix has it: a grey has exactly no chroma
_DELTA = 6 / 29


def bin_centres() -> torch.Tensor:
    """float32 [AB_BINS, 2]: the (a, b) of each bin's centre, a-major."""
    a, b = torch.meshgrid(_CENTRES, _CENTRES, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [N, 3, H, W] in [0, 1] -> CIE Lab [N, 3, H, W] (D65 white)."""
    rgb = rgb.float().clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ, linear) / _WHITE.view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA**3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab [N, 3, H, W] -> sRGB [N, 3, H, W], clipped to [0, 1] (a chroma outside the gamut saturates)."""
    return _linear_to_srgb(_lab_to_linear(lab).clamp(0, 1))


def _lab_to_linear(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab [N, 3, H, W] -> linear RGB [N, 3, H, W], outside [0, 1] where the colour is outside the gamut."""
    lab = lab.float()
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE.view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", _XYZ_TO_RGB, xyz)


def _linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    return torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=1e-12) ** (1 / 2.4) - 0.055, 12.92 * linear)


def fit_to_gamut(lightness: torch.Tensor, ab: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Chroma [N, 2, H, W] scaled towards grey, pixel by pixel, as little as it takes for (L, a, b) to lie in the
    sRGB gamut (to 2**-steps of the scale), so that the colour keeps the lightness L [N, 1, H, W] exactly, where
    clipping the RGB would change it. A grey of any L in [0, 100] is in the gamut: scale 0 always fits."""

    def fits(light: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        linear = _lab_to_linear(torch.cat([light, chroma], dim=1))
        return ((linear >= -1e-4) & (linear <= 1 + 1e-4)).all(dim=1, keepdim=True)

    outside = ~fits(lightness, ab)
    if not outside.any():
        return ab
    # Only the pixels outside the gamut are searched, as one column [1, C, M, 1].
    where = outside.permute(0, 2, 3, 1).reshape(-1).nonzero().squeeze(1)
    chroma = ab.permute(0, 2, 3, 1).reshape(-1, 2).clone()
    light = lightness.permute(0, 2, 3, 1).reshape(-1, 1)[where].T.reshape(1, 1, -1, 1)
    wanted = chroma[where].T.reshape(1, 2, -1, 1)
    low, high = torch.zeros_like(light), torch.ones_like(light)
    for _ in range(steps):  # bisection of each pixel's scale: low fits, high does not
        middle = (low + high) / 2
        ok = fits(light, wanted * middle)
        low, high = torch.where(ok, middle, low), torch.where(ok, high, middle)
    chroma[where] = (wanted * low).reshape(2, -1).T
    n, _, h, w = ab.shape
    return chroma.reshape(n, h, w, 2).permute(0, 3, 1, 2)


def grey_from_lightness(lightness: torch.Tensor) -> torch.Tensor:
    """CIE L [N, 1, H, W] in [0, 100] -> the grey sRGB value [N, 1, H, W] in [0, 1] of that lightness."""
    no_chroma = torch.zeros_like(lightness, dtype=torch.float32).expand(-1, 2, -1, -1)
    return lab_to_rgb(torch.cat([lightness.float(), no_chroma], dim=1))[:, :1]


def nearest_bins(ab: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Chroma [N, 2, H, W] -> (bins int64 [N, K, H, W], weights float32 [N, K, H, W]): each pixel's ``neighbours``
    (K, at most 9) nearest bins, nearest first, weighed by a Gaussian of the distance (``sigma`` in Lab units)
    summing to 1: the soft target of the pixel's chroma.

    The nearest bins of a point are among the 3 x 3 grid bins around its nearest one (the bins beyond are at least
    1.5 steps away, the 5th nearest at most 1.58): 9 distances a pixel, not AB_BINS."""
    n, _, h, w = ab.shape
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    side = len(_CENTRES)
    nearest = torch.round((pixels + AB_RANGE) / AB_STEP).long().clamp(0, side - 1)
    steps = torch.tensor([(da, db) for da in (-1, 0, 1) for db in (-1, 0, 1)])
    cells = nearest[:, None, :] + steps[None]  # [P, 9, 2] grid coordinates
    inside = ((cells >= 0) & (cells < side)).all(dim=2)
    cells = cells.clamp(0, side - 1)
    distances = torch.linalg.vector_norm(_CENTRES[cells] - pixels[:, None, :], dim=2)
    near, which = distances.masked_fill(~inside, float("inf")).topk(neighbours, dim=1, largest=False)
    chosen = cells.gather(1, which[:, :, None].expand(-1, -1, 2))
    bins = chosen[:, :, 0] * side + chosen[:, :, 1]
    weights = torch.softmax(-(near**2) / (2 * sigma**2), dim=1)
    return (bins.view(n, h, w, -1).permute(0, 3, 1, 2), weights.view(n, h, w, -1).permute(0, 3, 1, 2))


def rebalancing_weights(counts: torch.Tensor, mix: float = 0.5, sigma: float = 5.0) -> torch.Tensor:
    """float32 [AB_BINS]: each bin's weight in the loss from how often training pixels fall in it (``counts``
    [AB_BINS]): the empirical distribution smoothed by a Gaussian (``sigma`` in Lab units), mixed with the uniform
    one by ``mix``, inverted, and scaled so that the expected weight of a training pixel is 1."""
    centres = bin_centres()
    kernel = torch.exp(-(torch.cdist(centres, centres) ** 2) / (2 * sigma**2))
    smooth = kernel @ (counts.float() / counts.sum().clamp(min=1))
    smooth = smooth / smooth.sum()
    weights = 1 / ((1 - mix) * smooth + mix / AB_BINS)
    return weights / (smooth * weights).sum()


def colour_loss(logits: torch.Tensor, ab: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Rebalanced cross-entropy of the predicted bins against the soft targets of the true chroma.

    Args:
        logits: float32 [N, AB_BINS, h, w] (any h, w: the chroma is resized to them);
        ab: the true chroma [N, 2, H, W]; weights: [AB_BINS] (:func:`rebalancing_weights`).
    """
    if ab.shape[-2:] != logits.shape[-2:]:
        ab = F.interpolate(ab, size=logits.shape[-2:], mode="area")
    bins, targets = nearest_bins(ab)
    pixel_weights = weights[bins[:, 0]]  # the weight of each pixel's nearest bin
    cross = -(targets * F.log_softmax(logits.float(), dim=1).gather(1, bins)).sum(dim=1)
    return (pixel_weights * cross).sum() / pixel_weights.sum()


def annealed_mean(logits: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Bin logits [N, AB_BINS, h, w] -> chroma [N, 2, h, w]: the mean of the distribution sharpened by
    ``temperature`` (1: the mean, greyish; towards 0: the mode, vivid but patchy; 0.38 as Zhang et al.)."""
    probabilities = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nkhw,kc->nchw", probabilities, bin_centres())


def recombine(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The input's own L [N, 1, H, W] and predicted chroma [N, 2, h, w] (resized to H x W) -> sRGB [N, 3, H, W]
    with that lightness: a chroma outside the gamut at a pixel's L is scaled towards grey (:func:`fit_to_gamut`)."""
    if ab.shape[-2:] != lightness.shape[-2:]:
        ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
    lightness = lightness.float()
    return lab_to_rgb(torch.cat([lightness, fit_to_gamut(lightness, ab.float())], dim=1))


def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk's colourfulness (2003) of each image of sRGB [N, 3, H, W] in [0, 1], on the 0-255 scale
    of the paper: 0 for grey, about 30 "moderately", over 80 "extremely" colourful. float32 [N]."""
    r, g, b = (255 * rgb.float()).unbind(dim=1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    spread = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
    return spread + 0.3 * torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB) of each image pair [N, 3, H, W] in [0, 1]: float32 [N]."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(dim=1).clamp(min=1e-10)
    return 10 * torch.log10(1 / mse)
