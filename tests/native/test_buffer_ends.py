"""The CPU kernels read nothing past the end of their inputs.

The CPU kernels load 64-byte lane vectors (the volume kernels: 16 float32 / 8 float64 values along a
line, unrolled for lines of 1-4 vectors; the projection: 64, 32 or 16 bytes by the CPU, forced with
FASTPOSE_PROJECTION_LANE_BYTES, with deinterleaving loads of 3 L point values and 2 L keypoint
values) and finish each line / chunk with scalar tails. A vector load that runs past the last
element reads whatever follows it; inside a padded allocator chunk that passes every value test
silently. Here every input of every CPU kernel (logits / heatmaps, joints, weights, the cotangent
of the backward; points, cameras, keypoints, weights, the projection's cotangent) is placed so that
its last byte is the last byte before a page mapped PROT_NONE (``_at_page_end``): a read of even
one element too many faults (the test process dies with SIGSEGV, and pytest's faulthandler names
the test). Sizes are odd on purpose: W not a multiple of the lane count and W = 1, single lines and
single rows, odd J, N*T*J below one vector, a 4096-point projection chunk with a one-point tail, and
rows of several max blocks with a short last block. Every result is also compared with the float64
reference, so a tail that is skipped or read from the wrong place fails too. Needs no special
build (an AddressSanitizer build finds the same over-reads, and more, but only when one is made).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastpose import ops
from fastpose.camera import h36m_cameras
from tests._tolerances import ATOL_RTOL
from tests.native._util import require_ext

pytestmark = [
    pytest.mark.usefixtures("_ext_loaded"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages via mprotect: Linux only"),
]

_PAGE = mmap.PAGESIZE


@pytest.fixture
def _ext_loaded():
    require_ext()


def _mprotect():
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.mprotect
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _at_page_end(values: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``values`` whose last byte is followed by an inaccessible page.

    An anonymous mapping of ceil(nbytes / page) + 1 pages; the last page is made PROT_NONE and the
    tensor is the last nbytes bytes before it (so its start is only element-aligned, as a slice of a
    larger tensor would be). The tensor keeps the mapping alive (torch.frombuffer holds a reference).
    """
    values = values.detach().contiguous()
    isz = values.element_size()
    nbytes = values.numel() * isz
    body = max(1, -(-nbytes // _PAGE)) * _PAGE
    m = mmap.mmap(-1, body + _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if _mprotect()(base + body, _PAGE, 0) != 0:  # PROT_NONE
        pytest.fail(f"mprotect of the guard page failed: errno {ctypes.get_errno()}")
    t = torch.frombuffer(m, dtype=values.dtype, count=values.numel(), offset=body - nbytes)
    assert t.data_ptr() + nbytes == base + body, "the tensor must end exactly at the guard page"
    t.copy_(values.reshape(-1))
    return t.view(values.shape)


def _outputs_and_grad(fn, x: torch.Tensor, cot: list[torch.Tensor]):
    """fn(x) and d(sum_k cot_k . out_k)/dx, with the cotangents passed to autograd as given."""
    x = x.detach().requires_grad_(True) if x.is_leaf else x
    outs = fn(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    (grad,) = torch.autograd.grad(outs, x, cot)
    return [o.detach() for o in outs], grad


def _assert_matches(got, want, dtype, what):
    atol, rtol = ATOL_RTOL[dtype]
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"{what}, output {k}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        torch.testing.assert_close(g.double(), w.double(), rtol=rtol, atol=atol * max(w.abs().max().item(), 1e-3),
                                   msg=lambda m, k=k: f"{what}, output {k}: {m}")


# ---- volume ops: soft_argmax, heatmap_mse and the fused head, 2D and 3D ------------------------------

# Line widths: every width the kernels unroll (1-4 full vectors: 16..64 float32, 8..32 float64), a
# width one past (a full-vector loop and a one-value tail), below one vector, and W = 1.
_VOLUME_WIDTHS = [(torch.float32, w) for w in (1, 7, 16, 17, 32, 48, 64, 65)] + [
    (torch.float64, w) for w in (1, 5, 8, 9, 16, 24, 32)
]
# (B, J, [D,] H): a single line of a single row, and odd J with rows of several max blocks of
# ~1024 values whose last block is short (67 or 2 * 37 lines).
_SPATIAL_2D = [(1, 1, 1), (1, 3, 67)]
_SPATIAL_3D = [(1, 1, 1, 1), (1, 3, 2, 37)]
_VOLUME_OPS = ["soft_argmax", "heatmap_mse", "soft_argmax_heatmap_mse"]


def _volume_inputs(op: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    b, j, *spatial = shape
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x.view(b * j, -1)[-1, -1] += 5.0  # the largest logit of the last row is its very last value
    if op == "heatmap_mse":
        x = 0.3 * x + 0.2
    extent = torch.tensor(spatial[::-1], dtype=torch.float64) - 1
    mu = torch.rand(b, j, len(spatial), generator=g, dtype=torch.float64) * extent
    wt = torch.rand(b, j, generator=g, dtype=torch.float64) + 0.5
    return x.to(dtype), mu.to(dtype), wt.to(dtype)


def _volume_fn(op: str, nd: int, mu: torch.Tensor, wt: torch.Tensor):
    if op == "soft_argmax":
        f = getattr(ops, f"soft_argmax_{nd}d")
        return lambda t, be: f(t, backend=be)
    if op == "heatmap_mse":
        f = getattr(ops, f"heatmap_mse_{nd}d")
        return lambda t, be: f(t, mu, 1.5, wt, "none", backend=be)
    f = getattr(ops, f"soft_argmax_heatmap_mse_{nd}d")
    return lambda t, be: f(t, mu, 1.5, wt, backend=be)


@pytest.mark.parametrize("op", _VOLUME_OPS)
@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize(("dtype", "w"), _VOLUME_WIDTHS, ids=lambda v: str(v).replace("torch.", ""))
def test_volume_kernels_read_nothing_past_their_inputs(op, nd, dtype, w):
    for shape in (_SPATIAL_2D if nd == 2 else _SPATIAL_3D):
        shape = (*shape, w)
        x, mu, wt = _volume_inputs(op, shape, dtype, seed=w + 7 * nd)
        fn = _volume_fn(op, nd, _at_page_end(mu), _at_page_end(wt))
        gen = torch.Generator().manual_seed(w)
        # cotangents of every output, each at a page end too (the backward kernels read them)
        outs = fn(x, "reference")
        outs = outs if isinstance(outs, tuple) else (outs,)
        cot = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dtype) for o in outs]
        got = _outputs_and_grad(lambda t, fn=fn: fn(t, "cpu"), _at_page_end(x), [_at_page_end(c) for c in cot])
        ref_fn = _volume_fn(op, nd, mu.double(), wt.double())
        want = _outputs_and_grad(lambda t, f=ref_fn: f(t, "reference"), x.double(), [c.double() for c in cot])
        _assert_matches([*got[0], got[1]], [*want[0], want[1]], dtype, f"{op}_{nd}d {shape} {dtype}")


# ---- projection: project_to_2d (forward, backward) and reprojection_loss (forward + gradient) -------

# (N, T, J): one point (below every lane count), 15 points (one 16-byte block or none at 64 bytes),
# 6 frames of J = 17, and 241 frames of J = 17 = 4097 points (a 4096-point chunk, then a 1-point one).
_POINT_SHAPES = [(1, 1, 1), (1, 3, 5), (2, 3, 17), (1, 241, 17)]


def _projection_inputs(shape, per_frame: bool, dtype: torch.dtype, seed: int):
    n, t, j = shape
    g = torch.Generator().manual_seed(seed)
    xy = torch.randn(n, t, j, 2, generator=g, dtype=torch.float64) * 0.5
    z = torch.rand(n, t, j, 1, generator=g, dtype=torch.float64) * 4 + 2
    pts = torch.cat([xy * z / 2, z], -1)
    # real Human3.6M intrinsics and distortion: per frame (every lane may need another camera, or two
    # runs blended in one block) or one per sequence
    table = torch.tensor([c.intrinsics(normalized=True).tolist() for c in h36m_cameras("S9")], dtype=torch.float64)
    idx = torch.randint(0, 4, (n, t if per_frame else 1), generator=g)
    cam = table[idx]
    kp = torch.randn(n, t, j, 2, generator=g, dtype=torch.float64) * 0.5
    wt = torch.rand(n, t, j, generator=g, dtype=torch.float64) + 0.5
    go = torch.randn(n, t, j, 2, generator=g, dtype=torch.float64)
    return [a.to(dtype) for a in (pts, cam, kp, wt, go)]


@pytest.mark.parametrize("lane_bytes", [64, 32, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("per_frame", [True, False], ids=["per-frame", "per-sequence"])
@pytest.mark.parametrize("shape", _POINT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_projection_kernels_read_nothing_past_their_inputs(shape, per_frame, dtype, lane_bytes, monkeypatch):
    monkeypatch.setenv("FASTPOSE_PROJECTION_LANE_BYTES", str(lane_bytes))
    pts, cam, kp, wt, go = _projection_inputs(shape, per_frame, dtype, seed=sum(shape) + lane_bytes)
    g_cam, g_kp, g_wt, g_go = (_at_page_end(a) for a in (cam, kp, wt, go))
    loss_cot = _at_page_end(torch.tensor([0.37], dtype=dtype)).view(())
    what = f"{shape} {'per-frame' if per_frame else 'per-sequence'} cameras {dtype} {lane_bytes}-byte lanes"
    cam64, kp64, wt64 = cam.double(), kp.double(), wt.double()

    got = _outputs_and_grad(lambda p: ops.project_to_2d(p, g_cam, backend="cpu"), _at_page_end(pts), [g_go])
    want = _outputs_and_grad(lambda p: ops.project_to_2d(p, cam64, backend="reference"), pts.double(), [go.double()])
    _assert_matches([*got[0], got[1]], [*want[0], want[1]], dtype, f"project_to_2d {what}")

    for weighted in (True, False):
        got = _outputs_and_grad(
            lambda p, wt_=g_wt if weighted else None: ops.reprojection_loss(p, g_cam, g_kp, wt_, backend="cpu"),
            _at_page_end(pts), [loss_cot])
        want = _outputs_and_grad(
            lambda p, wt_=wt64 if weighted else None: ops.reprojection_loss(p, cam64, kp64, wt_,
                                                                                   backend="reference"),
            pts.double(), [torch.tensor(0.37, dtype=torch.float64)])
        _assert_matches([*got[0], got[1]], [*want[0], want[1]], dtype,
                        f"reprojection_loss ({'weighted' if weighted else 'unweighted'}) {what}")


def test_page_end_guard_faults_one_element_past_the_end():
    """The guard of ``_at_page_end`` works: the values read back are the values written, the tensor
    ends at a page boundary without starting at one, and reading the element after the last one
    kills the process with SIGSEGV (in a child process)."""
    v = torch.arange(7, dtype=torch.float32) + 0.5
    t = _at_page_end(v)
    assert torch.equal(t, v)
    end = t.data_ptr() + t.numel() * t.element_size()
    assert end % _PAGE == 0
    assert t.data_ptr() % _PAGE != 0, "7 float32 values end at the page end, so they cannot start at one"
    code = (
        "import ctypes, torch\n"
        "from tests.native.test_buffer_ends import _at_page_end\n"
        "t = _at_page_end(torch.ones(7))\n"
        "print(ctypes.c_float.from_address(t.data_ptr() + 24).value, flush=True)\n"  # the last element
        "print(ctypes.c_float.from_address(t.data_ptr() + 28).value, flush=True)\n"  # one past it
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONFAULTHANDLER": ""})
    assert proc.stdout.split() == ["1.0"], f"stdout {proc.stdout!r}, stderr {proc.stderr[-2000:]!r}"
    assert proc.returncode == -signal.SIGSEGV, f"reading past the guard gave exit {proc.returncode}, not SIGSEGV"


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize(("dtype", "w"), [(torch.float32, 17), (torch.float32, 16), (torch.float64, 9)],
                         ids=lambda v: str(v).replace("torch.", ""))
def test_non_finite_values_in_line_tails(nd, dtype, w):
    """A NaN or -inf logit in a line's scalar tail (W = 17 float32: one vector, then one value; W = 9
    float64) and in a vector part, with the input ending at a guard page. The scalar exp of a NaN
    once converted NaN to int (undefined behaviour, found by UBSan; the result was NaN by luck of
    x86's conversion); it now propagates NaN with no undefined operation. Checked against the
    reference: NaN where it gives NaN, and the -inf (masked) values contribute nothing."""
    shape = (1, 3, 5, w) if nd == 2 else (1, 3, 2, 3, w)
    for op in _VOLUME_OPS:
        x, mu, wt = _volume_inputs(op, shape, dtype, seed=w + nd)
        rows = x.view(3, -1)
        rows[0, -1] = float("nan")  # the last value of a line: the scalar tail when W = 17 / 9
        rows[1, 0] = float("nan")  # the first lane of a vector
        rows[2, -1] = float("-inf")
        rows[2, w // 2] = float("-inf")
        fn = _volume_fn(op, nd, mu, wt)
        got = fn(_at_page_end(x), "cpu")
        want = fn(x.double(), "reference")
        got, want = (g if isinstance(g, tuple) else (g,) for g in (got, want))
        for k, (g, e) in enumerate(zip(got, want, strict=True)):
            assert torch.equal(g.isnan(), e.isnan()), f"{op}_{nd}d {dtype} W={w}, output {k}: NaN pattern {g} vs {e}"
            atol, rtol = ATOL_RTOL[dtype]
            torch.testing.assert_close(g.double(), e.double(), rtol=rtol, atol=atol * 100, equal_nan=True,
                                       msg=lambda m, k=k, op=op: f"{op}_{nd}d {dtype} W={w}, output {k}: {m}")
