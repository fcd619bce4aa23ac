"""Where a UDF's model runs: the task's GPU, else a visible CUDA device, else the CPU; torch threads per task.

Spark-free: the factory reads the task's resources from ``TaskContext`` and passes them in.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import torch
from torch import nn

from lakelens.pyworker import mark_unsettled
from models.registry import Manifest, model_from_bytes

log = logging.getLogger("lakelens.udfs")

_MODELS: dict[tuple[str, str, str, str], nn.Module] = {}
_LOCK = threading.Lock()


def pick_device(gpu_addresses: Sequence[str] = (), cuda_available: bool | None = None) -> torch.device:
    """The device for this task.

    Args:
        gpu_addresses: the task's GPU addresses from Spark's resource scheduling (the first is used).
        cuda_available: whether CUDA works here (default: ask torch).

    Returns:
        ``cuda:i`` for the task's GPU, where ``i`` is its position in ``CUDA_VISIBLE_DEVICES`` when the cluster
        manager narrowed that list (YARN, Kubernetes), else the address itself; ``cuda:0`` when no GPU was
        assigned but CUDA works (a laptop or a one-GPU executor); otherwise the CPU.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return torch.device("cpu")
    if gpu_addresses:
        address = str(gpu_addresses[0]).strip()
        visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if address in visible:
            return torch.device("cuda", visible.index(address))
        return torch.device("cuda", int(address)) if address.isdigit() else torch.device("cuda", 0)
    return torch.device("cuda", 0)


def set_threads(cores: int) -> None:
    """Torch intra-op threads = the task's cores, so the executor's concurrent tasks do not oversubscribe it."""
    cores = max(1, int(cores))
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


def cached_model(manifest: Manifest, weights: bytes, device: torch.device) -> nn.Module:
    """The model of ``manifest`` on ``device``, built once per Python worker (Spark reuses workers across tasks)
    and kept, keyed by name, version, weights digest and device."""
    key = (manifest.name, manifest.version, manifest.weights_sha256, str(device))
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            # channels_last: oneDNN's convolutions (and tensor cores) run faster on it, with the same results.
            model = model_from_bytes(manifest, weights).to(device, memory_format=torch.channels_last).eval()
            _MODELS[key] = model
            mark_unsettled()  # the worker now keeps the model: freeze it at the end of the task
            log.info("loaded model %s %s on %s", manifest.name, manifest.version, device)
    return model
