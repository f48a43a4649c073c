"""What the interpreter cannot show: the GPU code path.

* every kernel compiles with the real Triton compiler for sm_90 (and sm_80 with ``--arch 80``,
  see ``python -m tests.triton._compile_check``) down to a cubin, without a GPU;
* on that path the ops are ``triton_op``s and ``torch.compile(fullgraph=True)`` traces through
  them into ``triton_kernel_wrapper_functional`` nodes, forward and backward;
* under the interpreter (opaque ``custom_op``s) the default Inductor backend compiles the fused
  head, forward and backward, with ``fullgraph=True``.

The first two run in a subprocess without ``TRITON_INTERPRET`` (the flag is read when the kernels
are decorated).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._tolerances import assert_close
from tests.triton._inputs import joints_for, volume

ROOT = Path(__file__).resolve().parents[2]


def _run_without_interpreter(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=540)


def test_kernels_compile_for_sm90(K):
    pytest.importorskip("triton.backends.nvidia")
    res = _run_without_interpreter("tests.triton._compile_check", "--arch", "90", "--dtypes", "fp16,fp64")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("ok sm_90") >= 2 * 20


def test_compile_traces_into_triton_kernels(K):
    res = _run_without_interpreter("tests.triton._trace_check")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("ok ") == 7, res.stdout


def test_inductor_fullgraph_fused_head(K, device):
    gen = torch.Generator().manual_seed(9)
    shape = (2, 3, 4, 5, 6)
    x = volume(gen, shape, device=device)
    mu, w = joints_for(gen, shape, device=device)
    mu, w = mu.float(), w.float()
    fused = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_3d

    def head(t):
        coords, mse = fused(t, mu, 1.5, w)
        return (coords - mu).square().mean() + 20.0 * mse

    torch._dynamo.reset()
    compiled = torch.compile(head, fullgraph=True)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    loss_c = compiled(xs[0])
    loss_c.backward()
    loss_e = head(xs[1])
    loss_e.backward()
    assert_close(loss_c.detach(), loss_e.detach(), torch.float32, "compiled loss")
    assert_close(xs[0].grad, xs[1].grad, torch.float32, "compiled gradient")
