"""Colourisation without Spark: Lab conversion, chroma bins and their loss, both architectures' shapes, the input's
lightness kept, and a tiny colouriser that learns a colour from lightness alone."""

from __future__ import annotations

import pytest
import torch

from models.colour import (
    AB_BINS,
    annealed_mean,
    bin_centres,
    colour_loss,
    fit_to_gamut,
    grey_from_lightness,
    lab_to_rgb,
    nearest_bins,
    rebalancing_weights,
    recombine,
    rgb_to_lab,
)
from models.colouriser import HypercolumnColouriser, ResidualColouriser


def soft_targets(ab: torch.Tensor) -> torch.Tensor:
    """The soft targets of :func:`nearest_bins` as a dense distribution over the bins per pixel [N, AB_BINS, H, W]."""
    bins, weights = nearest_bins(ab)
    return torch.zeros(ab.shape[0], AB_BINS, *ab.shape[2:]).scatter_(1, bins, weights)


def pixels(*rgb: tuple[float, float, float]) -> torch.Tensor:
    """[1, 3, 1, len(rgb)] from RGB triples in [0, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).T.reshape(1, 3, 1, len(rgb))


def test_lab_of_known_colours_and_the_way_back() -> None:
    lab = rgb_to_lab(pixels((1, 1, 1), (0, 0, 0), (1, 0, 0), (0, 0, 1)))[0, :, 0].T
    expected = torch.tensor([[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86]])
    torch.testing.assert_close(lab, expected, atol=0.05, rtol=0)
    rgb = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4, rtol=0)
    assert bin_centres().abs().max() >= lab[:, 1:].abs().max()  # the grid covers sRGB's chroma


def test_grey_of_a_lightness_has_that_lightness_and_no_chroma() -> None:
    lightness = torch.linspace(0, 100, 11).view(1, 1, 1, 11)
    grey = grey_from_lightness(lightness).expand(-1, 3, -1, -1)
    lab = rgb_to_lab(grey)
    torch.testing.assert_close(lab[:, :1], lightness, atol=1e-3, rtol=0)
    assert lab[:, 1:].abs().max() < 1e-3


def test_soft_targets_sit_on_the_nearest_bins_and_rare_bins_weigh_more() -> None:
    ab = torch.tensor([[31.0, -12.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)
    targets = soft_targets(ab)
    assert targets.shape == (1, AB_BINS, 1, 2)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(1, 1, 2))
    nearest = bin_centres()[targets.argmax(dim=1).view(-1)]
    assert nearest.tolist() == [[30.0, -10.0], [0.0, 0.0]]
    counts = torch.zeros(AB_BINS)
    counts[targets[0, :, 0, 1].argmax()] = 1000  # grey is common
    counts[targets[0, :, 0, 0].argmax()] = 10
    weights = rebalancing_weights(counts)
    assert weights[targets[0, :, 0, 0].argmax()] > 2 * weights[targets[0, :, 0, 1].argmax()]
    # A pixel from the counted distribution weighs 1 on average (the loss keeps its scale).
    smooth = torch.exp(-(torch.cdist(bin_centres(), bin_centres()) ** 2) / 50) @ (counts / counts.sum())
    assert float((smooth / smooth.sum() * weights).sum()) == pytest.approx(1.0, abs=1e-4)


def test_recombine_keeps_the_input_lightness_at_the_input_size() -> None:
    lightness = torch.rand(1, 1, 37, 23, generator=torch.Generator().manual_seed(1)) * 60 + 20
    ab = torch.full((1, 2, 8, 8), 12.0)  # predicted at a lower size, any chroma in gamut at these lightnesses
    rgb = recombine(lightness, ab)
    assert rgb.shape == (1, 3, 37, 23)
    torch.testing.assert_close(rgb_to_lab(rgb)[:, :1], lightness, atol=0.05, rtol=0)
    grey = recombine(lightness, torch.zeros(1, 2, 8, 8))
    torch.testing.assert_close(grey[:, 0], grey[:, 1], atol=1e-5, rtol=0)


def test_a_chroma_outside_the_gamut_is_toned_down_and_the_lightness_still_kept() -> None:
    g = torch.Generator().manual_seed(2)
    lightness = torch.rand(2, 1, 30, 40, generator=g) * 100  # from black to white, where little chroma fits
    ab = (torch.rand(2, 2, 30, 40, generator=g) * 2 - 1) * 110  # the bins' whole range: mostly out of the gamut
    fitted = fit_to_gamut(lightness, ab)
    scale = fitted.norm(dim=1) / ab.norm(dim=1)
    assert float(scale.min()) >= 0 and float(scale.max()) <= 1 + 1e-5 and float(scale.mean()) < 0.9
    torch.testing.assert_close(fitted / scale.clamp(min=1e-6)[:, None], ab, atol=1e-3, rtol=1e-3)  # same hue
    rgb = recombine(lightness, ab)
    torch.testing.assert_close(rgb_to_lab(rgb)[:, :1], lightness, atol=0.1, rtol=0)
    clipped = lab_to_rgb(torch.cat([lightness, ab], dim=1))  # what clipping the RGB instead does to the lightness
    assert float((rgb_to_lab(clipped)[:, :1] - lightness).abs().max()) > 5
    inside = torch.full((1, 2, 4, 4), 5.0)
    assert torch.equal(fit_to_gamut(torch.full((1, 1, 4, 4), 50.0), inside), inside)  # in the gamut: untouched


@pytest.mark.parametrize("architecture", [HypercolumnColouriser, ResidualColouriser])
def test_both_architectures_give_bins_per_pixel_at_the_input_size(architecture: type) -> None:
    model = architecture(widths=(8, 16, 32)).eval()
    assert model.side == 4
    with torch.no_grad():
        assert model(torch.rand(2, 1, 12, 20) * 100).shape == (2, AB_BINS, 12, 20)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 1, 10, 12))
    backbone = architecture(backbone="mobilenet_v2").eval()
    with torch.no_grad():
        assert backbone(torch.rand(1, 1, 64, 32) * 100).shape == (1, AB_BINS, 64, 32)
    assert "weights" in model.state_dict() and model.state_dict()["weights"].shape == (AB_BINS,)


def shapes_on_grey(n: int, seed: int) -> torch.Tensor:
    """RGB [n, 3, 16, 16]: a mid-grey background and one red square (darker than it) at a random place."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.full((n, 3, 16, 16), 0.75)
    for i in range(n):
        y, x = torch.randint(0, 10, (2,), generator=g).tolist()
        rgb[i, :, y : y + 6, x : x + 6] = torch.tensor([0.8, 0.1, 0.1]).view(3, 1, 1)
    return rgb


@pytest.mark.parametrize("architecture", [HypercolumnColouriser, ResidualColouriser])
def test_a_tiny_colouriser_learns_the_colour_that_goes_with_a_lightness(architecture: type) -> None:
    torch.manual_seed(0)
    model = architecture(widths=(8, 16))
    lab = rgb_to_lab(shapes_on_grey(16, seed=0))
    counts = soft_targets(lab[:, 1:]).sum(dim=(0, 2, 3))
    model.weights.copy_(rebalancing_weights(counts))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        optimiser.zero_grad()
        loss = colour_loss(model(lab[:, :1]), lab[:, 1:], model.weights)
        loss.backward()
        optimiser.step()
    test = rgb_to_lab(shapes_on_grey(4, seed=1))
    with torch.no_grad():
        ab = annealed_mean(model.eval()(test[:, :1]))
    red = test[:, 1] > 40  # the square's pixels (a* of that red is about 60)
    assert ab[:, 0][red].mean() > 35 and ab[:, 0][~red].abs().mean() < 10


def test_soft_targets_match_the_nearest_bins_of_the_whole_grid() -> None:
    ab = (torch.rand(1, 2, 40, 50, generator=torch.Generator().manual_seed(2)) * 2 - 1) * 108
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    near, which = torch.cdist(pixels, bin_centres()).topk(5, dim=1, largest=False)
    brute = torch.zeros(len(pixels), AB_BINS).scatter_(1, which, torch.softmax(-(near**2) / 50, dim=1))
    torch.testing.assert_close(soft_targets(ab).permute(0, 2, 3, 1).reshape(-1, AB_BINS), brute, atol=1e-4, rtol=0)
