"""The DCDM network (Kaneda et al., ICML 2023): a fully convolutional 2D/3D network mapping a residual on
the grid to a search direction. Any grid size works (convolutions only; one pooling level with
``ceil_mode`` and an upsampling back to the input size).

Design choices for generalisation across grids and obstacle layouts:
- no biases and ReLU only, so f(c r) = c f(r) for c > 0 (the line search makes the scale irrelevant,
  and the network never sees a scale it was not trained on);
- the fluid mask multiplies every feature map, so solid cells stay zero and walls are felt locally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Res(nn.Module):
    def __init__(self, conv: type, c: int) -> None:
        super().__init__()
        self.a = conv(c, c, 3, padding=1, bias=False)
        self.b = conv(c, c, 3, padding=1, bias=False)

    def forward(self, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return h + self.b(F.relu(self.a(h)) * m) * m


class DCDMNet(nn.Module):
    """residual (B, 1, *grid) and fluid mask (1, 1, *grid) -> direction (B, 1, *grid).

    conv in -> residual block -> [avg-pool 2 -> two residual blocks -> upsample] -> concat skip ->
    conv merge -> residual block -> per-voxel linear output (1x1 conv).
    """

    def __init__(self, dim: int = 3, channels: int = 16) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        self.dim, self.channels = dim, channels
        c = channels
        self.inp = conv(1, c, 3, padding=1, bias=False)
        self.fine1 = _Res(conv, c)
        self.coarse1 = _Res(conv, c)
        self.coarse2 = _Res(conv, c)
        self.merge = conv(2 * c, c, 3, padding=1, bias=False)
        self.fine2 = _Res(conv, c)
        self.out = conv(c, 1, 1, bias=False)

    def config(self) -> dict:
        return {"dim": self.dim, "channels": self.channels}

    def forward(self, r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool3d if self.dim == 3 else F.avg_pool2d
        m = mask
        h = F.relu(self.inp(r)) * m
        h = self.fine1(h, m)
        mc = (pool(m, 2, ceil_mode=True) > 0).to(h.dtype)
        g = pool(h, 2, ceil_mode=True)
        g = self.coarse2(self.coarse1(g, mc), mc)
        g = F.interpolate(g, size=h.shape[2:], mode="nearest") * m
        h = F.relu(self.merge(torch.cat([h, g], dim=1))) * m
        h = self.fine2(h, m)
        return self.out(h) * m
