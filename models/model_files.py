"""Registering a model trained elsewhere, from whichever file it comes in: this project's safetensors, a
torchvision-style state dict (``.pth``/``.pt``, read with ``torch.load(weights_only=True)`` and stored as
safetensors), or an ONNX graph (``.onnx``, run by onnxruntime). Every file is checked against its manifest before
anything is written, and refused with what is wrong; nothing is ever unpickled.

Example:
    >>> entry = register_model(registry, "classifier.onnx", "classifier.json")   # -> Manifest, version v1
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from models.data import Preprocessing
from models.registry import (
    ONNX,
    Manifest,
    RegistryError,
    check_manifest,
    check_runs,
    model_from_bytes,
    model_from_state,
    register_weights,
    save_entry,
    save_model,
)

STATE_DICT_SUFFIXES = (".pth", ".pt")


def register_model(root: str | Path, model_file: str | Path, manifest_file: str | Path) -> Manifest:
    """Register ``model_file`` (``.safetensors``, ``.pth``/``.pt`` or ``.onnx``) under the manifest in
    ``manifest_file`` as the next version of its name in the registry at ``root``.

    Raises:
        RegistryError: the file cannot be read as its kind, or does not fit its manifest (architecture, input size,
            class names); the message says which.
    """
    model_file = Path(model_file)
    suffix = model_file.suffix.lower()
    if suffix not in (".safetensors", ".onnx", *STATE_DICT_SUFFIXES):
        raise RegistryError(
            f"{model_file}: a model file must be .safetensors, .pth/.pt (a state dict) or .onnx; convert it to one"
        )
    if suffix == ".safetensors":
        return register_weights(root, model_file, manifest_file)
    manifest = dataclasses.replace(_read_manifest(manifest_file), weights_sha256="", created="")
    try:
        data = model_file.read_bytes()
    except OSError as exc:
        raise RegistryError(f"model file {model_file} cannot be read: {exc}") from exc
    if suffix == ".onnx":
        return _register_onnx(root, data, manifest, str(model_file))
    return _register_state_dict(root, model_file, manifest)


def _read_manifest(manifest_file: str | Path) -> Manifest:
    try:
        text = Path(manifest_file).read_text()
    except OSError as exc:
        raise RegistryError(f"manifest {manifest_file} cannot be read: {exc}") from exc
    return Manifest.from_json(text, str(manifest_file))


def _register_state_dict(root: str | Path, model_file: Path, manifest: Manifest) -> Manifest:
    """A torchvision-style state dict: tensors by parameter name (or under ``state_dict``), read without
    unpickling anything else, loaded strictly into the manifest's architecture, stored as safetensors."""
    try:
        state = torch.load(model_file, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises pickle, zip and runtime errors for files that are not a safe state dict
        raise RegistryError(
            f"{model_file} is not a state dict torch can read with weights_only=True (tensors only, no code): "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RegistryError(f"{model_file} holds no state dict (a mapping of parameter names to tensors)")
    model = model_from_state(manifest, state, str(model_file))
    check_manifest(manifest)
    check_runs(model, manifest)
    return save_model(model, manifest, root)


def _register_onnx(root: str | Path, data: bytes, manifest: Manifest, source: str) -> Manifest:
    """An ONNX graph: loadable by onnxruntime, taking the manifest's input, giving its named outputs, one score
    per class name; its vectors' length is recorded."""
    if manifest.architecture != ONNX:
        raise RegistryError(f"{source} is an ONNX graph: its manifest's architecture must be {ONNX!r}")
    check_manifest(manifest)
    model = model_from_bytes(manifest, data, source)
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    shape = model.input_shape
    wanted = [None, prep.channels, prep.size, prep.size]
    fits = len(shape) == 4 and all(
        not isinstance(got, int) or not want or got == want for got, want in zip(shape, wanted, strict=True)
    )
    if not fits:
        raise RegistryError(
            f"{source} takes input {shape} but the manifest's preprocessing gives [N, {prep.channels}, {prep.size}, "
            f"{prep.size}]: set preprocessing.size and channels to the graph's input"
        )
    try:
        with torch.inference_mode():
            outputs = model(torch.zeros(2, prep.channels, prep.size, prep.size))
    except Exception as exc:  # noqa: BLE001 - whatever the graph raises, it cannot serve this manifest
        raise RegistryError(f"{source} fails on a blank input of its manifest's size: {exc}") from exc
    for name, value in outputs.items():
        if value.ndim < 1 or value.shape[0] != 2:
            raise RegistryError(f"{source}: output {name!r} has shape {tuple(value.shape)}, not one row per image")
    scores = outputs.get("scores")
    if scores is not None and scores.shape[1:] != (len(manifest.classes),):
        raise RegistryError(
            f"{source}: the manifest lists {len(manifest.classes)} classes but output 'scores' gives "
            f"{tuple(scores.shape[1:])} per image: give one class name per score, in order"
        )
    vectors = outputs.get("vectors")
    arch_args = dict(manifest.arch_args)
    if vectors is not None:
        if vectors.ndim != 2:
            raise RegistryError(f"{source}: output 'vectors' has shape {tuple(vectors.shape)}, not [N, dim]")
        arch_args["dim"] = int(vectors.shape[1])
    return save_entry(dataclasses.replace(manifest, arch_args=arch_args), lambda path: path.write_bytes(data), root)
