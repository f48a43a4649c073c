"""Registration of the triton backend: ops, devices, dtypes, torch.library names, the
heatmap-MSE gradient paths, refusal reasons, and a clean ImportError without triton."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import fastpose.reference as R
from fastpose.ops import _dispatch, _spec
from tests._tolerances import assert_close
from tests.triton._inputs import joints_for, volume

ROOT = Path(__file__).resolve().parents[2]


def test_every_op_is_registered(K):
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    for op in _dispatch.OPS:
        impl = _dispatch.get_impl(op, "triton")
        assert impl.devices == frozenset({"cuda", "cpu"} if interpret else {"cuda"}), op
        assert impl.dtypes == frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64}), op
        name = _spec.spec(op).custom_op  # the op itself, or the op it reuses (2D head: the 3D head, D = 1)
        for suffix in ("", "_backward"):
            assert hasattr(torch.ops.fastpose, f"{name}_triton{suffix}"), f"fastpose::{name}_triton{suffix}"


def test_heatmap_mse_gradient_recomputed(K, device):
    """The forward returns only the loss (nothing volume-sized is saved); the backward recomputes
    2 w (h - t) from the saved inputs."""
    gen = torch.Generator().manual_seed(11)
    shape = (2, 3, 4, 5, 6)
    h = volume(gen, shape, scale=0.3, shift=0.2, device=device).requires_grad_(True)
    mu, w = joints_for(gen, shape, device=device)
    loss = K.heatmap_mse.heatmap_mse_3d(h, mu.float(), 1.4, w.float(), "sum")
    loss.backward(torch.tensor(0.7, device=device))
    ref = R.heatmap_mse.heatmap_mse_backward(torch.tensor(0.7, dtype=torch.float64), h.detach().double(),
                                             mu, 1.4, w, "sum")
    assert_close(h.grad, ref, torch.float32, "grad")
    out = K.heatmap_mse._hm3_op(h, mu.float(), 1.4, w.float(), "sum")
    assert isinstance(out, torch.Tensor) and out.shape == ()  # the loss alone: no saved gradient output


def test_heatmap_mse_2d_none_recomputes_per_joint_gradient(K, device):
    """reduction "none": one incoming gradient per (b, j), applied in the recomputing backward."""
    gen = torch.Generator().manual_seed(12)
    shape = (2, 3, 9, 11)
    h = volume(gen, shape, scale=0.3, shift=0.2, device=device).requires_grad_(True)
    mu, w = joints_for(gen, shape, device=device)
    loss = K.heatmap_mse._hm2_op(h, mu.float(), 2.0, None, "none")
    g = torch.rand(loss.shape, generator=gen).to(device)
    loss.backward(g)
    ref = R.heatmap_mse.heatmap_mse_backward(g.double(), h.detach().double(), mu, 2.0, None, "none")
    assert_close(h.grad, ref, torch.float32, "recomputed grad")


def test_empty_volume_is_refused_with_a_reason(K):
    x = torch.zeros(2, 3, 4, 0, 5)
    assert _dispatch.not_supported_reasons("soft_argmax_3d", "triton", x, x)
    reasons = _dispatch.not_supported_reasons("soft_argmax_heatmap_mse_3d", "triton", x, x,
                                              torch.zeros(2, 3, 3), 1.0, None)
    assert any("empty volume" in r for r in reasons)


def test_missing_triton_raises_import_error():
    """Without triton the package raises ImportError naming the fix; fastpose.ops still imports,
    records why and serves the other backends."""
    code = (
        "import sys\n"
        "sys.modules['triton'] = None  # 'import triton' now fails\n"
        "from fastpose.ops import _dispatch\n"
        "print('RECORDED', 'triton' in _dispatch.load_errors())\n"
        "print('AVAILABLE', _dispatch.available_backends('soft_argmax_3d'))\n"
        "try:\n"
        "    try:\n"
        "        import fastpose.kernels\n"
        "    except ModuleNotFoundError:  # not installed: the source folder\n"
        "        import kernels\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    out = res.stdout
    assert "IMPORTERROR" in out and "pip install" in out, out + res.stderr
    assert "RECORDED True" in out, out + res.stderr
    assert "'triton'" not in out.split("AVAILABLE", 1)[1].splitlines()[0], out
