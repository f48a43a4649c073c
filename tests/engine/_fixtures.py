"""Small models with non-trivial weights for the engine tests, and a checkpoint of each.

Freshly initialised models are too tame for a parity test (the volumetric model starts with an
almost flat volume, so every soft-argmax lands on the centre whatever the engine computes):
the weights and BatchNorm statistics are re-drawn so that every output varies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SPGNET_TINY = {"channels": 32, "filter_widths": [3, 3], "num_joints": 17}
VOLUMETRIC_TINY = {"input_size": 64, "backbone_layers": [1, 1, 1, 1], "backbone_width": 8, "deconv_channels": 16,
                   "lift_channels": 16, "depth": 8, "refine_hidden": 32, "num_joints": 18}
TINY = {"spgnet": SPGNET_TINY, "volumetric": VOLUMETRIC_TINY}


def randomise_(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every weight (fan-in scaled), bias and BatchNorm statistic, reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                fan_in = m.weight[0].numel() if not isinstance(m, nn.ConvTranspose2d) else m.weight[:, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.5 / math.sqrt(fan_in)))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def save_tiny_checkpoint(name: str, path, seed: int = 0):
    """Build the tiny ``name`` model, randomise it, save it as a fastpose checkpoint; return the path."""
    from fastpose.engine import build_model
    from fastpose.train.common import save_checkpoint

    model = randomise_(build_model(name, config=TINY[name]), seed)
    cfg = model.config.to_dict()
    arch = {"model": name, **{k: v for k, v in cfg.items() if k != "model"}}
    return save_checkpoint(path, arch=arch, model=model)
