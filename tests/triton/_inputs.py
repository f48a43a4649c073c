"""Small random inputs shared by the Triton-specific tests (sizes odd and tiny: the interpreter
runs them on 2 CPU cores)."""

from __future__ import annotations

import torch

__all__ = ["volume", "joints_for", "points"]


def volume(gen: torch.Generator, shape, dtype=torch.float32, scale=1.0, shift=0.0, device="cpu"):
    """Random logits/heatmaps (B, J, *S) drawn in float64 then rounded to ``dtype``."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift
    return x.to(dtype).to(device)


def joints_for(gen: torch.Generator, shape, device="cpu"):
    """(joints (B, J, n) inside the volume, ordered x, y[, z]; weights (B, J)) in float32/64."""
    b, j, *spatial = shape
    n = len(spatial)
    extent = torch.tensor(spatial[::-1], dtype=torch.float64) - 1  # (x, y[, z]) sizes - 1
    mu = torch.rand(b, j, n, generator=gen, dtype=torch.float64) * extent
    w = torch.rand(b, j, generator=gen, dtype=torch.float64) + 0.5
    return mu.to(device), w.to(device)


def points(gen: torch.Generator, lead=(3, 5), j=4, device="cpu"):
    """(points (*lead, J, 3) in front of the camera, some beyond the clamp; cameras (lead[0], 1.., 9),
    one per sequence, broadcast over the other leading dims by torch's rule; keypoints (*lead, J, 2);
    weights (*lead, J)), float64."""
    xy = torch.randn(*lead, j, 2, generator=gen, dtype=torch.float64) * 0.6
    z = torch.rand(*lead, j, 1, generator=gen, dtype=torch.float64) * 3 + 1.5
    pts = torch.cat([xy * z / 2, z], -1)
    pts[..., 0, 0] = pts[..., 0, 2] * 1.5  # |x/z| > 1: clamped
    cam = torch.tensor([2.29, 2.29, 0.025, 0.029, -0.207, 0.248, -0.003, -0.001, -0.0014], dtype=torch.float64)
    cam = cam.expand(lead[0], 9).clone()
    cam[:, :4] += torch.randn(lead[0], 4, generator=gen, dtype=torch.float64) * 0.01
    cam = cam.reshape(lead[0], *([1] * (len(lead) - 1)), 9)
    kp = torch.randn(*lead, j, 2, generator=gen, dtype=torch.float64) * 0.3
    w = torch.rand(*lead, j, generator=gen, dtype=torch.float64) + 0.5
    return pts.to(device), cam.to(device), kp.to(device), w.to(device)
