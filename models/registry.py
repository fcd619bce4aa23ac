"""The model registry: versioned weights (safetensors) with a JSON manifest, under ``<registry>/<name>/<version>/``.

Loading never unpickles: the manifest names an architecture from :data:`ARCHITECTURES` (a fixed map to this
project's own modules) and its arguments, and the weights are plain tensors. A user registers weights trained
elsewhere with :func:`register_weights` and a manifest of the same form.

Example:
    >>> model = Classifier(num_classes=10, in_channels=1)
    >>> entry = save_model(model, Manifest.new("fashion", "classifier", {"num_classes": 10, "in_channels": 1}), root)
    >>> same, manifest = load_model(root, "fashion")          # the latest version, here "v1"
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import nn

from lakelens.errors import InputError
from models.data import Preprocessing

# Architecture name -> "module:Class". Only these are ever built from a manifest.
ARCHITECTURES: dict[str, str] = {
    "classifier": "models.classifier:Classifier",
    "embedder": "models.embedder:Embedder",
    "detector": "models.detector:Detector",
    "segmenter": "models.segmenter:Segmenter",
    "captioner": "models.captioner:Captioner",
    "text_image": "models.text_image:TextImage",
    "colouriser_hypercolumn": "models.colouriser:HypercolumnColouriser",
    "colouriser_residual": "models.colouriser:ResidualColouriser",
    "autoencoder": "models.autoencoder:ConvAutoencoder",
    "mobilenet_v2": "models.mobilenet_v2:MobileNetV2",
    "efficientnet_lite0": "models.efficientnet_lite:EfficientNetLite0",
}
# Per architecture: the manifest's list of output names and the argument that sizes the model's head for them.
OUTPUT_NAMES: dict[str, tuple[str, str]] = {
    "classifier": ("classes", "num_classes"),
    "detector": ("classes", "num_classes"),
    "segmenter": ("classes", "num_classes"),
    "captioner": ("vocabulary", "vocab_size"),
    "text_image": ("vocabulary", "vocab_size"),
    "mobilenet_v2": ("classes", "num_classes"),
    "efficientnet_lite0": ("classes", "num_classes"),
}
# Architectures whose forward takes the image batch alone, so that registration can run them once on a blank one.
IMAGES_ONLY = (
    "classifier", "detector", "segmenter", "embedder", "text_image", "colouriser_hypercolumn", "colouriser_residual",
    "autoencoder", "mobilenet_v2", "efficientnet_lite0",
)  # fmt: skip
# The length of the "vectors" an architecture outputs where no arch_args.dim says it (pooled backbone features).
FEATURE_DIMS = {"mobilenet_v2": 1280, "efficientnet_lite0": 1280}
# Small default models made by this project (models/default/make.sh), installed into a lake's registry by the demo.
BUNDLED = Path(__file__).resolve().parent / "default"
WEIGHTS = "weights.safetensors"
ONNX = "onnx"  # the architecture of a model registered as an ONNX graph, run by onnxruntime
ONNX_FILE = "model.onnx"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_VERSION = re.compile(r"^v(\d+)$")


class RegistryError(InputError, ValueError):
    """A registry entry is missing, malformed, or its weights do not fit its architecture."""


@dataclass(frozen=True)
class Manifest:
    """What a registered model is and how it was made; stored as ``manifest.json`` beside its weights."""

    name: str
    architecture: str
    arch_args: dict[str, Any]
    version: str = ""  # assigned by save_model: v1, v2, ...
    preprocessing: dict[str, Any] = field(default_factory=dict)  # input size, channels, mean, std
    classes: list[str] = field(default_factory=list)
    vocabulary: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)  # table, rows, snapshot, epochs, seed
    metrics: dict[str, float] = field(default_factory=dict)
    command: str = ""
    created: str = ""
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    @classmethod
    def new(cls, name: str, architecture: str, arch_args: dict[str, Any], **fields: Any) -> Manifest:
        return cls(name=name, architecture=architecture, arch_args=dict(arch_args), **fields)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"manifest {where} is not valid JSON: {exc}") from exc
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted({"name", "architecture", "arch_args"} - set(data))
        if unknown or missing:
            raise RegistryError(f"manifest {where}: unknown fields {unknown}, missing fields {missing}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def build_model(manifest: Manifest) -> nn.Module:
    """An untrained model of the manifest's architecture and arguments."""
    target = ARCHITECTURES.get(manifest.architecture)
    if target is None:
        raise RegistryError(
            f"model {manifest.name}: unknown architecture {manifest.architecture!r}; "
            f"known: {', '.join(sorted(set(ARCHITECTURES) - set(FEATURE_DIMS)))}, and the pretrained backbones "
            f"{', '.join(sorted(FEATURE_DIMS))}"
        )
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)(**manifest.arch_args)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"model {manifest.name}: bad arguments for {manifest.architecture}: {exc}") from exc


def save_model(model: nn.Module, manifest: Manifest, root: str | Path) -> Manifest:
    """Write ``model``'s weights and ``manifest`` as the next version of ``manifest.name``; returns the entry.

    The entry appears whole or not at all: it is written to a temporary folder, then renamed into place.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_entry(manifest, lambda path: save_file(state, str(path)), root)


def save_entry(manifest: Manifest, write: Callable[[Path], None], root: str | Path) -> Manifest:
    """Write the next version of ``manifest.name``: ``write(path)`` writes its weights file (safetensors, or the
    ONNX graph of an ``onnx`` entry), then the manifest with the file's SHA-256; returns the entry."""
    base = Path(root) / manifest.name
    base.mkdir(parents=True, exist_ok=True)
    version = manifest.version or f"v{max(_versions(base), default=0) + 1}"
    target = base / version
    if target.exists():
        raise RegistryError(f"model {manifest.name} version {version} already exists at {target}")
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write(tmp / weights_file(manifest))
        entry = dataclasses.replace(
            manifest,
            version=version,
            created=manifest.created or datetime.now(UTC).isoformat(timespec="seconds"),
            weights_sha256=_sha256(tmp / weights_file(manifest)),
        )
        (tmp / MANIFEST).write_text(entry.to_json())
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def load_model(root: str | Path, name: str, version: str | None = None) -> tuple[nn.Module, Manifest]:
    """The model ``name`` at ``version`` (default: the latest), in eval mode on the CPU, with its manifest.

    Raises:
        RegistryError: no such entry; unknown architecture; weights corrupt, changed since registration, or not
            matching the architecture.
    """
    manifest, weights = read_entry(root, name, version)
    return model_from_bytes(manifest, weights), manifest


def read_manifest(root: str | Path, name: str, version: str | None = None) -> Manifest:
    """The manifest of ``name`` at ``version`` (default: the latest), without reading its weights."""
    return _manifest_and_folder(root, name, version)[0]


def read_entry(root: str | Path, name: str, version: str | None = None) -> tuple[Manifest, bytes]:
    """The manifest and weights file bytes of ``name`` at ``version`` (default: the latest), the weights checked
    against the manifest's SHA-256. What a Spark job ships to its executors, which need no access to the registry."""
    manifest, folder = _manifest_and_folder(root, name, version)
    version = folder.name
    try:
        weights = (folder / weights_file(manifest)).read_bytes()
    except OSError as exc:
        raise RegistryError(f"weights of {name} {version} cannot be read: {exc}") from exc
    if manifest.weights_sha256 and hashlib.sha256(weights).hexdigest() != manifest.weights_sha256:
        raise RegistryError(f"weights of {name} {version} changed since they were registered (SHA-256 differs)")
    return manifest, weights


def _manifest_and_folder(root: str | Path, name: str, version: str | None) -> tuple[Manifest, Path]:
    base = Path(root) / name
    if version is None:
        found = _versions(base)
        if not found:
            raise RegistryError(f"no model named {name!r} in the registry at {root}")
        version = f"v{max(found)}"
    folder = base / version
    if not (folder / MANIFEST).is_file():
        raise RegistryError(f"no version {version} of model {name!r} in the registry at {root}")
    return Manifest.from_json((folder / MANIFEST).read_text(), str(folder / MANIFEST)), folder


def weights_file(manifest: Manifest) -> str:
    """The name of an entry's weights file: safetensors, or the graph of a model registered as ONNX."""
    return ONNX_FILE if manifest.architecture == ONNX else WEIGHTS


def model_from_bytes(manifest: Manifest, weights: bytes, source: str = "") -> nn.Module:
    """The model of ``manifest`` holding ``weights`` (a safetensors file's bytes, or an ONNX graph's; ``source``
    names them in errors, by default the manifest's name and version), in eval mode on the CPU."""
    source = source or f"{manifest.name} {manifest.version}"
    if manifest.architecture == ONNX:
        # Imported here: onnxruntime is only needed where a registered ONNX model runs.
        from models.onnx_model import OnnxModel, OnnxModelError

        try:
            return OnnxModel(weights, **manifest.arch_args).eval()
        except (OnnxModelError, TypeError) as exc:
            raise RegistryError(f"ONNX model {source}: {exc}") from exc
    try:
        state = load(weights)
    except (SafetensorError, OSError) as exc:
        raise RegistryError(f"weights file {source} is not a readable safetensors file: {exc}") from exc
    return model_from_state(manifest, state, source)


def register_weights(root: str | Path, weights: str | Path, manifest_file: str | Path) -> Manifest:
    """Register weights trained elsewhere (a safetensors file) under a manifest of the same form.

    Before anything is written, the weights are checked against the manifest's architecture, the manifest against
    the model (:func:`check_manifest`), and the model is run once on its input (:func:`check_runs`).
    """
    manifest = Manifest.from_json(Path(manifest_file).read_text(), str(manifest_file))
    try:
        data = Path(weights).read_bytes()
    except OSError as exc:
        raise RegistryError(f"weights file {weights} cannot be read: {exc}") from exc
    model = model_from_bytes(manifest, data, str(weights))
    check_manifest(manifest)
    check_runs(model, manifest)
    return save_model(model, dataclasses.replace(manifest, weights_sha256="", created=""), root)


def check_manifest(manifest: Manifest) -> None:
    """Refuse a manifest its model cannot work with: preprocessing that is not usable, input channels other than
    the architecture's, or output names (classes, vocabulary) that do not match the head's size.

    Raises:
        RegistryError: what is wrong, and what the manifest needs.
    """
    where = f"model {manifest.name}"
    try:
        prep = Preprocessing.from_manifest(manifest.preprocessing)
    except (TypeError, ValueError) as exc:
        raise RegistryError(
            f"{where}: preprocessing {manifest.preprocessing} is not usable ({exc}); it needs size (input side in "
            "pixels), channels (1 or 3), and a mean and a std (> 0) per channel"
        ) from exc
    in_channels = manifest.arch_args.get("in_channels", 3)
    if manifest.architecture != ONNX and prep.channels != in_channels:  # an ONNX graph's input says it itself
        raise RegistryError(
            f"{where}: preprocessing gives {prep.channels} channels but the {manifest.architecture} takes "
            f"{in_channels} (arch_args.in_channels)"
        )
    names, size_arg = OUTPUT_NAMES.get(manifest.architecture, ("", ""))
    if names:
        listed, size = len(getattr(manifest, names)), manifest.arch_args.get(size_arg)
        if listed != size:
            raise RegistryError(
                f"{where}: the manifest lists {listed} {names} but the {manifest.architecture}'s head has {size} "
                f"(arch_args.{size_arg}): give one name per output, in the head's order"
            )


def check_runs(model: nn.Module, manifest: Manifest) -> None:
    """Run the model once on a blank batch of its manifest's input, so that an input it cannot take (a size its
    layers cannot halve often enough, for one) is refused when it is registered, not on every image later.

    Raises:
        RegistryError: the model fails on its own input.
    """
    if manifest.architecture not in IMAGES_ONLY:
        return
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    try:
        with torch.inference_mode():
            model(torch.zeros(1, prep.channels, prep.size, prep.size))
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, it cannot serve this manifest
        raise RegistryError(
            f"model {manifest.name} fails on its manifest's input ({prep.channels} x {prep.size} x {prep.size}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def install_bundled(
    root: str | Path, bundled: str | Path = BUNDLED, names: Sequence[str] | None = None
) -> list[Manifest]:
    """Copy the latest version of every bundled model (or of those in ``names``) into the registry at ``root``,
    unless the registry already has a model of that name (a user's own or a newer one wins); returns the entries
    copied.

    Each bundled entry is loaded (and so checked) first; each appears whole or not at all.
    """
    copied = []
    for name in model_names(bundled):
        if names is not None and name not in names:
            continue
        target = Path(root) / name
        if _versions(target):
            continue
        _, manifest = load_model(bundled, name)
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".tmp-{uuid.uuid4().hex}"
        try:
            shutil.copytree(Path(bundled) / name / manifest.version, tmp)
            tmp.rename(target / manifest.version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        copied.append(manifest)
    return copied


def vector_dim(manifest: Manifest) -> int:
    """The length of the unit vectors the model of ``manifest`` outputs (``arch_args.dim``, or its backbone's)."""
    if "dim" in manifest.arch_args:
        return int(manifest.arch_args["dim"])
    if manifest.architecture in FEATURE_DIMS:
        return FEATURE_DIMS[manifest.architecture]
    raise RegistryError(f"model {manifest.name} ({manifest.architecture}) outputs no vectors")


def versions(root: str | Path, name: str) -> list[int]:
    """The version numbers of model ``name`` in the registry at ``root`` (none if it has no such model)."""
    return _versions(Path(root) / name)


def model_names(root: str | Path) -> list[str]:
    """Names of the models with at least one version in the registry at ``root`` (none if it does not exist)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if _versions(p)) if root.is_dir() else []


def model_from_state(manifest: Manifest, state: dict[str, torch.Tensor], weights: str) -> nn.Module:
    """The model of ``manifest`` holding ``state``, whose parameter names and shapes must be the architecture's
    exactly (``weights`` names them in errors), in eval mode on the CPU."""
    model = build_model(manifest)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                ", ".join(f"{k} is {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}" for k in wrong[:5]),
            )
            if part
        )
        raise RegistryError(
            f"weights {weights} do not match architecture {manifest.architecture}({manifest.arch_args}): {detail}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _versions(base: Path) -> list[int]:
    if not base.is_dir():
        return []
    return [int(m.group(1)) for p in base.iterdir() if (m := _VERSION.match(p.name)) and (p / MANIFEST).is_file()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
