"""ResNet-50 (He et al. 2016, "v1.5" layout) written in the project, no torchvision needed.

The backbone of :class:`fastpose.models.VolumetricPoseNet`. The layout is the one torchvision
ships (stride 2 in the 3x3 convolution of a bottleneck, "ResNet v1.5"), so ImageNet weights
saved by torchvision (``resnet50-*.pth``) load by renaming keys (:func:`torchvision_to_fastpose_key`)
without torchvision installed.

Shapes for a 256 x 256 input (``width=64``, ``layers=(3, 4, 6, 3)``)::

    x (B, 3, 256, 256)
    stem: conv 7x7/2 -> BN -> ReLU -> maxpool 3x3/2     (B,   64, 64, 64)
    stage 1: 3 bottlenecks, stride 1                    (B,  256, 64, 64)
    stage 2: 4 bottlenecks, first stride 2              (B,  512, 32, 32)
    stage 3: 6 bottlenecks, first stride 2              (B, 1024, 16, 16)
    stage 4: 3 bottlenecks, first stride 2              (B, 2048,  8,  8)   = features (stride 32)
    classifier (optional): global mean -> fc            (B, num_classes)

Bottleneck i of a stage with inner width ``w``: 1x1 conv (-> w) -> BN -> ReLU -> 3x3 conv
(stride s, -> w) -> BN -> ReLU -> 1x1 conv (-> 4w) -> BN, plus the shortcut (identity, or a
1x1 conv with stride s and BN when the shape changes), then ReLU.

Module names (project) and their torchvision counterparts::

    stem.conv / stem.bn                     conv1 / bn1
    stages.{k}.{j}.conv1|bn1|conv2|...      layer{k+1}.{j}.conv1|bn1|conv2|...
    stages.{k}.{j}.shortcut.conv|bn         layer{k+1}.{j}.downsample.0|1
    classifier                              fc
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "Bottleneck",
    "ResNet",
    "resnet50",
    "torchvision_to_fastpose_key",
    "fastpose_to_torchvision_key",
    "load_torchvision_state_dict",
]

_EXPANSION = 4  # a bottleneck outputs 4x its inner width


class _ConvBN(nn.Sequential):
    """Convolution without bias followed by BatchNorm (the bias would be cancelled by BN)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 (cin -> w), 3x3 stride s (w -> w), 1x1 (w -> 4w), + shortcut, ReLU."""

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * _EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        # A projection shortcut only where the identity would not match (stride or channels).
        self.shortcut = _ConvBN(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class _Stem(nn.Module):
    """conv 7x7 stride 2 -> BN -> ReLU -> max-pool 3x3 stride 2 (total stride 4)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class ResNet(nn.Module):
    """Bottleneck ResNet; ``forward`` returns the stride-32 feature map (B, 32*width, H/32, W/32).

    Args:
        layers: bottlenecks per stage; (3, 4, 6, 3) is ResNet-50.
        width: inner width of the first stage (64 for ResNet-50); stage k uses ``width * 2**k``
            and outputs ``4 * width * 2**k`` channels. Small values give tiny test models.
        in_channels: input channels (3 for RGB).
        num_classes: if given, adds the ImageNet-style classifier (global mean pool + ``fc``)
            and ``forward`` returns logits (B, num_classes) instead of features.
        zero_init_residual: start every block's last BN at gamma = 0 (each block begins as the
            identity); the default keeps torchvision's default (gamma = 1).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        in_channels: int = 3,
        num_classes: int | None = None,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) == 0 or any(n < 1 for n in layers):
            raise ValueError(f"ResNet: layers must be a non-empty sequence of ints >= 1, got {layers}")
        if width < 1:
            raise ValueError(f"ResNet: width must be >= 1, got {width}")
        self.layers = layers
        self.width = width
        self.stem = _Stem(in_channels, width)
        stages = []
        cin = width
        for k, n in enumerate(layers):
            w = width * 2**k
            blocks = [Bottleneck(cin, w, stride=1 if k == 0 else 2)]
            cin = w * _EXPANSION
            blocks += [Bottleneck(cin, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        self.stride = 4 * 2 ** (len(layers) - 1)
        self.classifier = nn.Linear(cin, num_classes) if num_classes else None
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He (fan-out) initialisation for convolutions, as torchvision does; BN starts at (1, 0).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, out_channels, ceil(H/stride), ceil(W/stride))."""
        if x.dim() != 4:
            raise ValueError(f"ResNet: x must be (B, C, H, W), got shape {tuple(x.shape)}")
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if self.classifier is None:
            return f
        return self.classifier(f.mean(dim=(2, 3)))


def resnet50(num_classes: int | None = None, **kwargs) -> ResNet:
    """ResNet-50: layers (3, 4, 6, 3), width 64; 23.5 M parameters without the classifier,
    25.6 M with the 1000-class ``fc`` (torchvision's figure)."""
    return ResNet((3, 4, 6, 3), 64, num_classes=num_classes, **kwargs)


# torchvision name -> project name. Applied in order; each rule rewrites a key prefix/segment.
_TV_TO_FP = (
    (re.compile(r"^conv1\."), "stem.conv."),
    (re.compile(r"^bn1\."), "stem.bn."),
    (re.compile(r"^layer(\d+)\."), lambda m: f"stages.{int(m.group(1)) - 1}."),
    (re.compile(r"\.downsample\.0\."), ".shortcut.conv."),
    (re.compile(r"\.downsample\.1\."), ".shortcut.bn."),
    (re.compile(r"^fc\."), "classifier."),
)
_FP_TO_TV = (
    (re.compile(r"^stem\.conv\."), "conv1."),
    (re.compile(r"^stem\.bn\."), "bn1."),
    (re.compile(r"^stages\.(\d+)\."), lambda m: f"layer{int(m.group(1)) + 1}."),
    (re.compile(r"\.shortcut\.conv\."), ".downsample.0."),
    (re.compile(r"\.shortcut\.bn\."), ".downsample.1."),
    (re.compile(r"^classifier\."), "fc."),
)


def _rewrite(key: str, rules) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def torchvision_to_fastpose_key(key: str) -> str:
    """``layer3.0.downsample.1.running_mean`` -> ``stages.2.0.shortcut.bn.running_mean``."""
    return _rewrite(key, _TV_TO_FP)


def fastpose_to_torchvision_key(key: str) -> str:
    """Inverse of :func:`torchvision_to_fastpose_key`."""
    return _rewrite(key, _FP_TO_TV)


def load_torchvision_state_dict(
    model: ResNet,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
) -> dict[str, list[str]]:
    """Load a torchvision-format ResNet state dict (e.g. ``torch.load("resnet50-0676ba61.pth")``).

    Keys are renamed with :func:`torchvision_to_fastpose_key`. A model built without a classifier
    ignores the checkpoint's ``fc.*`` keys (a backbone does not use them); they are listed under
    ``"ignored"``. A ``"module."`` prefix (checkpoints saved from DataParallel) is stripped.

    Returns ``{"missing": [...], "unexpected": [...], "ignored": [...]}`` in project names.
    With ``strict=True`` (default) a missing or unexpected key, or a shape mismatch, raises
    ``ValueError`` naming the keys.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"load_torchvision_state_dict: model must be a ResNet, got {type(model).__name__}")
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if model.classifier is None and key.startswith("fc."):
            ignored.append(key)
            continue
        mapped[torchvision_to_fastpose_key(key)] = value
    own = model.state_dict()
    missing = sorted(k for k in own if k not in mapped)
    unexpected = sorted(k for k in mapped if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(own[k].shape)}"
        for k in mapped
        if k in own and tuple(mapped[k].shape) != tuple(own[k].shape)
    )
    if strict and (missing or unexpected or mismatched):
        raise ValueError(
            "load_torchvision_state_dict: the checkpoint does not match the model "
            f"(layers={model.layers}, width={model.width}): missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{'...' if len(unexpected) > 8 else ''}, shape mismatches {mismatched[:8]}"
        )
    loadable = {k: v for k, v in mapped.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(loadable, strict=False)
    return {"missing": missing, "unexpected": unexpected, "ignored": ignored}
