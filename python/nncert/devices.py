"""Where a computation runs: ``device=None`` means where the input lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._arrays import is_torch_tensor
from .errors import InvalidInputError


@dataclass(frozen=True)
class Device:
    type: str  # "cpu" or "cuda"
    index: int | None = None

    def torch(self) -> Any:
        import torch
        return torch.device(self.type if self.index is None else f"{self.type}:{self.index}")

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


CPU = Device("cpu")


def resolve_device(device: Any, *inputs: Any) -> Device:
    """The device to run on. ``None``: the device of the first torch tensor among ``inputs`` (CPU for
    numpy). Asking for CUDA where torch sees none is an error, never a silent fallback."""
    if device is None:
        for x in inputs:
            if is_torch_tensor(x):
                device = x.device
                break
        else:
            return CPU
    text = str(device)
    kind, _, idx = text.partition(":")
    if kind == "cpu":
        return CPU
    if kind != "cuda":
        raise InvalidInputError(f"device must be None, 'cpu', 'cuda' or 'cuda:k', got {device!r}")
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidInputError(f"device {text!r} needs torch (pip install 'nncert[torch]')") from e
    if not torch.cuda.is_available():
        raise InvalidInputError(f"device {text!r} requested but torch sees no CUDA device")
    index = int(idx) if idx else None
    if index is not None and index >= torch.cuda.device_count():
        raise InvalidInputError(f"device {text!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return Device("cuda", index)


def available_devices() -> list[str]:
    """The devices nncert can use here."""
    out = ["cpu"]
    try:
        import torch
        if torch.cuda.is_available():
            out += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return out


def require_torch(what: str) -> None:
    """Raises InvalidInputError naming ``what`` when torch is not installed (the torch paths are optional)."""
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidInputError(f"{what}: the torch backend needs torch (pip install 'nncert[torch]')") from e


def available_memory() -> float:
    """Bytes of host memory available now (MemAvailable), or 4 GiB where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 4.0 * 2**30


def free_memory(device: Device) -> float:
    """Bytes free now on ``device``: the CUDA device's free memory, or the host's available memory."""
    if device.type == "cuda":
        import torch
        return float(torch.cuda.mem_get_info(device.torch())[0])
    return available_memory()
