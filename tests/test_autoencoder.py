"""The autoencoder and its predict core without Spark: shapes, learning to give images back (the denoising variant
from noisy inputs), odd images ranked by their error, and odd inputs (one pixel, all black, huge, corrupt) as rows."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from models.autoencoder import ConvAutoencoder
from models.data import Preprocessing
from models.registry import Manifest, check_runs
from udfs.autoencode import AutoencodePredictor, cell_box
from udfs.predictor import predict_frame

PREP = Preprocessing(16, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def squares(n: int, seed: int) -> torch.Tensor:
    """n images [n, 3, 16, 16], normalised as PREP: a dark square at a random place on a light background."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.full((n, 3, 16, 16), 0.8)
    for i in range(n):
        y, x = torch.randint(0, 10, (2,), generator=g).tolist()
        rgb[i, :, y : y + 6, x : x + 6] = 0.2
    return (rgb - 0.5) / 0.25


def trained(noise: float = 0.0) -> ConvAutoencoder:
    torch.manual_seed(0)
    model = ConvAutoencoder(code_dim=16, widths=(8, 16, 16), noise=noise)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    images = squares(128, seed=0)
    for _ in range(70):
        optimiser.zero_grad()
        reconstruction = model(images)["reconstruction"]
        loss = F.mse_loss(reconstruction, images)
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def model() -> ConvAutoencoder:
    return trained()


def test_codes_and_reconstructions_have_the_input_shape() -> None:
    model = ConvAutoencoder(code_dim=24, in_channels=1, widths=(8, 16, 32)).eval()
    out = model(torch.randn(3, 1, 32, 48))
    assert out["vectors"].shape == (3, 24) and out["reconstruction"].shape == (3, 1, 32, 48)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.randn(1, 1, 30, 32))


def test_it_learns_to_give_its_kind_of_image_back_and_odd_ones_come_back_worst(model) -> None:
    held_out = squares(16, seed=1)
    noise = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(3))  # pixels of noise: not a scene
    with torch.no_grad():
        err_scenes = ((model(held_out)["reconstruction"] - held_out) ** 2).flatten(1).mean(dim=1)
        err_noise = ((model(noise)["reconstruction"] - noise) ** 2).flatten(1).mean(dim=1)
    baseline = ((held_out - held_out.mean()) ** 2).mean()  # the error of giving back the mean grey
    assert err_scenes.mean() < 0.25 * baseline
    assert err_scenes.max() < err_noise.min()  # every odd image ranks before every scene


def test_the_denoising_variant_gives_back_the_clean_image_from_a_noisy_one(model) -> None:
    plain, denoising = model, trained(0.5)
    clean = squares(16, seed=1)
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        errors = [F.mse_loss(m(noisy)["reconstruction"], clean).item() for m in (plain, denoising)]
    assert errors[1] < errors[0]
    again = [denoising(clean)["reconstruction"] for _ in range(2)]
    assert denoising.training is False and torch.equal(*again)  # no noise once in use


def test_the_worst_cell_is_a_box_in_the_image_pixels() -> None:
    assert cell_box(0, 0, (100, 60)) == {"x0": 0, "y0": 0, "w": 25, "h": 15}
    assert cell_box(3, 2, (100, 60)) == {"x0": 50, "y0": 45, "w": 25, "h": 15}
    assert cell_box(3, 3, (1, 1)) == {"x0": 0, "y0": 0, "w": 1, "h": 1}  # never empty


def encoded(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_predictor_ranks_an_odd_image_first_and_makes_rows_of_odd_inputs(model) -> None:
    manifest = Manifest.new(
        "tiny-ae", "autoencoder", {"code_dim": 16, "widths": [8, 16, 16]}, preprocessing=PREP.to_manifest()
    )
    check_runs(model, manifest)
    predictor = AutoencodePredictor(model, manifest, torch.device("cpu"), batch_size=4, max_pixels=50_000_000)
    scene = (squares(1, seed=5)[0].permute(1, 2, 0).numpy() * 0.25 + 0.5) * 255
    odd = np.asarray(Image.new("RGB", (64, 48), (255, 0, 255))).copy()
    odd[:12, 48:] = 0  # a black corner: the worst region
    images = {
        "scene": encoded(Image.fromarray(scene.round().astype(np.uint8)).resize((64, 64), Image.NEAREST)),
        "odd": encoded(Image.fromarray(odd)),
        "pixel": encoded(Image.new("L", (1, 1), 90)),
        "black": encoded(Image.new("RGB", (40, 30))),
        "huge": encoded(Image.new("RGB", (6000, 5000), (200, 200, 200))),
        "broken": b"\x89PNG\r\n\x1a\n cut short",
    }
    frame = pd.DataFrame({"image_id": list(images), "bytes": list(images.values())})
    out = predict_frame(predictor, frame).set_index("image_id")
    assert out.index.tolist() == list(images)  # rows in = rows out, in order
    good = out[out["error"].isna()]
    assert good.index.tolist() == ["scene", "odd", "pixel", "black", "huge"]
    assert out.loc["broken", "error"] and out.loc["broken", "vector"] is None
    assert out.loc["odd", "error_per_pixel"] > 5 * out.loc["scene", "error_per_pixel"]
    assert out.loc["odd", "unusualness"] > 5 * out.loc["scene", "unusualness"]
    # The black frame is simple (its 4 x 4 average is itself): unusualness is its error over sqrt(0 + 0.001).
    black = out.loc["black"]
    assert black["unusualness"] == pytest.approx(black["error_per_pixel"] / 0.001**0.5, rel=1e-4)
    assert out.loc["odd", "worst_region"] == {"x0": 48, "y0": 0, "w": 16, "h": 12}
    for name, row in good.iterrows():
        assert abs(np.linalg.norm(row["vector"]) - 1) < 1e-5, name
        assert row["worst_error"] >= row["error_per_pixel"] >= 0, name
        assert Image.open(io.BytesIO(row["reconstruction"])).size == (16, 16), name
