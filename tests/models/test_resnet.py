"""ResNet-50 written in the project: shapes, parameter count and torchvision-format weights."""

from __future__ import annotations

import pytest
import torch

from fastpose.models.resnet import (
    ResNet,
    fastpose_to_torchvision_key,
    load_torchvision_state_dict,
    resnet50,
    torchvision_to_fastpose_key,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # shared fixture, conftest.py


def _torchvision_state_dict(layers, width, num_classes=1000, seed=0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet key names and shapes, built from its naming rules
    (conv1/bn1, layer{k}.{j}.conv{1,2,3}/bn{1,2,3}, downsample.0/1 on each stage's first block, fc)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def bn(prefix, c):
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g) * 0.1
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    def conv(name, cout, cin, k):
        sd[name] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    conv("conv1.weight", width, 3, 7)
    bn("bn1", width)
    cin = width
    for k, n in enumerate(layers, start=1):
        w = width * 2 ** (k - 1)
        for j in range(n):
            p = f"layer{k}.{j}"
            conv(f"{p}.conv1.weight", w, cin, 1)
            bn(f"{p}.bn1", w)
            conv(f"{p}.conv2.weight", w, w, 3)
            bn(f"{p}.bn2", w)
            conv(f"{p}.conv3.weight", 4 * w, w, 1)
            bn(f"{p}.bn3", 4 * w)
            if j == 0:
                conv(f"{p}.downsample.0.weight", 4 * w, cin, 1)
                bn(f"{p}.downsample.1", 4 * w)
            cin = 4 * w
    sd["fc.weight"] = torch.randn(num_classes, cin, generator=g) * 0.01
    sd["fc.bias"] = torch.randn(num_classes, generator=g) * 0.01
    return sd


def test_resnet50_shapes_and_parameter_count():
    torch.manual_seed(0)
    with_fc = resnet50(num_classes=1000)
    assert sum(p.numel() for p in with_fc.parameters()) == 25_557_032  # torchvision's ResNet-50
    backbone = resnet50()
    assert sum(p.numel() for p in backbone.parameters()) == 23_508_032
    assert backbone.out_channels == 2048 and backbone.stride == 32
    with torch.no_grad():
        f = backbone.eval()(torch.randn(1, 3, 64, 96))
    assert f.shape == (1, 2048, 2, 3)
    assert torch.isfinite(f).all() and f.std() > 0


def test_full_resnet50_torchvision_state_dict_loads_without_missing_or_unexpected_keys():
    sd = _torchvision_state_dict((3, 4, 6, 3), 64)
    model = resnet50(num_classes=1000)
    result = load_torchvision_state_dict(model, sd)
    assert result == {"missing": [], "unexpected": [], "ignored": []}
    own = model.state_dict()
    assert len(own) == len(sd)
    for key, value in sd.items():
        assert torch.equal(own[torchvision_to_fastpose_key(key)], value), key
    # The backbone alone (no classifier) uses everything but fc, which is reported as ignored.
    backbone = resnet50()
    result = load_torchvision_state_dict(backbone, {"module." + k: v for k, v in sd.items()})
    assert result == {"missing": [], "unexpected": [], "ignored": ["fc.weight", "fc.bias"]}
    assert torch.equal(backbone.stages[3][2].conv3.weight, sd["layer4.2.conv3.weight"])
    assert torch.equal(backbone.stages[1][0].shortcut.bn.running_var, sd["layer2.0.downsample.1.running_var"])


def test_key_mapping_round_trip_and_examples():
    assert torchvision_to_fastpose_key("layer3.0.downsample.1.running_mean") == "stages.2.0.shortcut.bn.running_mean"
    assert torchvision_to_fastpose_key("conv1.weight") == "stem.conv.weight"
    assert torchvision_to_fastpose_key("layer1.2.bn3.bias") == "stages.0.2.bn3.bias"
    model = ResNet((2, 1, 1, 2), 8, num_classes=5)
    for key in model.state_dict():
        assert torchvision_to_fastpose_key(fastpose_to_torchvision_key(key)) == key


def test_loaded_weights_define_the_function():
    """Two differently initialised tiny models give the same outputs after loading one checkpoint."""
    layers, width = (1, 2, 1, 1), 8
    sd = _torchvision_state_dict(layers, width, num_classes=10, seed=3)
    torch.manual_seed(1)
    a = ResNet(layers, width, num_classes=10)
    torch.manual_seed(2)
    b = ResNet(layers, width, num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = (a.eval()(x) - b.eval()(x)).abs().max()
        assert before > 1e-4
        load_torchvision_state_dict(a, sd)
        load_torchvision_state_dict(b, sd)
        ya, yb = a(x), b(x)
    assert ya.shape == (2, 10)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)


def test_mismatched_checkpoint_is_refused_with_the_keys_named():
    layers, width = (1, 1, 1, 1), 8
    sd = _torchvision_state_dict(layers, width, num_classes=4)
    model = ResNet(layers, width, num_classes=4)
    missing = dict(sd)
    del missing["layer2.0.bn2.running_var"]
    with pytest.raises(ValueError, match=r"stages\.1\.0\.bn2\.running_var"):
        load_torchvision_state_dict(model, missing)
    extra = dict(sd, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected \['stages\.4\.0\.conv1\.weight'\]"):
        load_torchvision_state_dict(model, extra)
    wrong = dict(sd, **{"conv1.weight": torch.zeros(8, 3, 3, 3)})
    with pytest.raises(ValueError, match=r"stem\.conv\.weight: checkpoint \(8, 3, 3, 3\)"):
        load_torchvision_state_dict(model, wrong)
    report = load_torchvision_state_dict(model, missing, strict=False)
    assert report["missing"] == ["stages.1.0.bn2.running_var"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="layers"):
        ResNet((3, 0, 1))
    with pytest.raises(ValueError, match="width"):
        ResNet((1,), width=0)
    with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\)"):
        ResNet((1,), 4)(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="must be a ResNet"):
        load_torchvision_state_dict(torch.nn.Linear(2, 2), {})
