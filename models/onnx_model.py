"""A model a user exported to ONNX, run by onnxruntime behind the same interface as this project's torch modules:
``forward(images)`` returns the named outputs the annotate predictors read (``scores``, ``vectors``, ...).

The manifest says which ONNX output is which: ``arch_args = {"input": "images", "outputs": {"scores": "prob"}}``.
onnxruntime runs on the CPU, or on a GPU through its CUDA execution provider where the installed onnxruntime has
one (the ``onnxruntime-gpu`` build) and the model is moved to a CUDA device.

Example:
    >>> model = OnnxModel(Path("classifier.onnx").read_bytes(), input="images", outputs={"scores": "prob"})
    >>> model(torch.rand(2, 3, 224, 224))["scores"].shape
    torch.Size([2, 1000])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


class OnnxModelError(ValueError):
    """The bytes are not an ONNX model onnxruntime can run, or its inputs and outputs are not those named."""


class OnnxModel(nn.Module):
    """An ONNX graph with one image input float32 [N, C, H, W] and named outputs [N, ...].

    Args:
        model: the ONNX file's bytes.
        input: the graph's image input.
        outputs: our output name (``scores``, ``vectors``, ...) -> the graph's output that holds it.
        dim: the length of its ``vectors`` output, recorded at registration (the index reads it from the manifest).
    """

    def __init__(self, model: bytes, input: str, outputs: Mapping[str, str], dim: int | None = None) -> None:
        super().__init__()
        self.model_bytes, self.input_name, self.output_names = model, input, dict(outputs)
        self.session = _session(model, "cpu")
        inputs = {i.name: i for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        if input not in inputs:
            raise OnnxModelError(f"the ONNX model has no input {input!r}; its inputs: {', '.join(inputs)}")
        missing = sorted(set(self.output_names.values()) - graph_outputs)
        if missing:
            raise OnnxModelError(
                f"the ONNX model has no output {missing[0]!r}; its outputs: {', '.join(graph_outputs)}"
            )
        self.input_shape: list[Any] = list(inputs[input].shape)
        self.device = torch.device("cpu")

    def _apply(self, fn: Any, recurse: bool = True) -> OnnxModel:
        # .to(device) reaches here: a CUDA device gets a session on the GPU where onnxruntime has one.
        device = fn(torch.zeros(0)).device
        if device != self.device:
            self.device, self.session = device, _session(self.model_bytes, device.type)
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images float32 [N, C, H, W] -> {our output name: [N, ...]} on the images' device."""
        feed = {self.input_name: images.detach().float().contiguous().cpu().numpy()}
        found = self.session.run(list(self.output_names.values()), feed)
        return {ours: torch.from_numpy(np.asarray(value)).to(images.device) for ours, value in
                zip(self.output_names, found, strict=True)}  # fmt: skip


def _session(model: bytes, device_type: str) -> ort.InferenceSession:
    providers = ["CPUExecutionProvider"]
    if device_type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(model, providers=providers)
    except Exception as exc:  # onnxruntime raises its own classes for every kind of bad file
        raise OnnxModelError(f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from exc
