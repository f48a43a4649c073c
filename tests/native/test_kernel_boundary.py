"""The typed kernel boundary of the native ops (fastpose/ops/native/_glue.py: KernelSpec), on the CPU.

* the Python declarations agree with the C++ role tables the kernels are typed from
  (csrc/row_scale/buffer_roles.h, ``fastpose._C.buffer_roles()``);
* the CUDA glue, run on ``meta`` tensors under ``dry_run`` (no GPU needed), hands the kernels
  exactly the declared buffers for every dtype -- this is the test that catches the float16/bfloat16
  reprojection-gradient bug of issue 12 (a saved gradient in the storage dtype where row_scale reads
  the accumulation dtype) on a machine without a GPU;
* mismatched buffers (dtype, shape, contiguity, device, missing, extra) are refused before C++.
"""

from __future__ import annotations

import pytest
import torch

from fastpose import _ext
from fastpose.ops.native import _glue as g
from tests.ops._cases import H36M_CAMERA

pytestmark = pytest.mark.skipif(not _ext.loaded(), reason="fastpose._C is not built")

HALF = [torch.float16, torch.bfloat16]
ALL = [*HALF, torch.float32, torch.float64]
_PROJECTION_KERNELS = ("project_forward", "project_backward", "reprojection_forward", "row_scale")


def _native_projection():
    from fastpose.ops.native import projection

    return projection


def test_declarations_match_the_cpp_role_tables():
    _native_projection()  # declares the projection kernels
    cpp = _ext.get().buffer_roles()
    for name in _PROJECTION_KERNELS:
        assert name in g.SPECS, f"{name} has no KernelSpec"
        assert name in cpp, f"{name} has no C++ role table"
    for name, table in cpp.items():
        assert name in g.SPECS, f"C++ declares roles for {name} but the glue has no KernelSpec for it"
        assert g.SPECS[name].roles() == table, f"{name}: glue {g.SPECS[name].roles()} != C++ {table}"


def test_saved_reprojection_gradient_is_acc_on_both_sides():
    """The producer (reprojection forward's grad) and the consumer (row_scale's src) agree."""
    _native_projection()
    cpp = _ext.get().buffer_roles()
    assert g.SPECS["reprojection_forward"].roles()["grad"] == "acc" == g.SPECS["row_scale"].roles()["src"]
    assert cpp["reprojection_forward"]["grad"] == "acc" == cpp["row_scale"]["src"]


def _meta_case(dtype, lead=(2, 3), j=4, cam_lead=(2, 1)):
    pts = torch.empty(*lead, j, 3, dtype=dtype, device="meta")
    cam = H36M_CAMERA.to(torch.float32 if dtype != torch.float64 else dtype).expand(*cam_lead, 9).to("meta")
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    kp = torch.empty(*lead, j, 2, dtype=acc, device="meta")
    w = torch.empty(*lead, j, dtype=acc, device="meta")
    return pts, cam, kp, w


@pytest.mark.parametrize("dtype", ALL, ids=str)
@pytest.mark.parametrize("backend", ["cuda", "cpu"])
def test_glue_buffers_satisfy_the_declarations(backend, dtype):
    """Every launch of the projection glue, CUDA included, for every dtype (meta tensors, dry run):
    the checks of each KernelSpec pass, and the saved gradient handed from the reprojection
    forward to row_scale is the accumulation dtype."""
    proj = _native_projection()
    pts, cam, kp, w = _meta_case(dtype)
    with g.dry_run():
        out = proj._project(backend, pts, cam)
        assert out.shape == (2, 3, 4, 2) and out.dtype == dtype
        grad = proj._project_backward(backend, torch.empty_like(out), pts, cam)
        assert grad.shape == pts.shape and grad.dtype == dtype
        for weights in (w, None):
            loss, saved = proj._reprojection(backend, pts, cam, kp, weights, True)
            acc = torch.float64 if dtype == torch.float64 else torch.float32
            assert saved.dtype == acc and saved.shape == pts.shape
            back = g.row_scale(backend, saved, torch.empty((), dtype=dtype, device="meta"), dtype)
            assert back.dtype == dtype and back.shape == pts.shape
        _, none = proj._reprojection(backend, pts, cam, kp, w, False)
        assert none.numel() == 0


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_storage_typed_saved_gradient_is_refused(dtype):
    """The issue-12 bug on the CPU: a saved gradient in the storage dtype (what the CUDA kernel
    used to write) handed to row_scale, which reads the accumulation dtype, fails the check."""
    pts, _cam, _kp, _w = _meta_case(dtype)
    wrong = torch.empty(pts.shape, dtype=dtype, device="meta")
    with g.dry_run(), pytest.raises(ValueError, match=rf"row_scale_cuda: buffer 'src' \(role acc, storage "
                                                     rf"dtype {dtype}\) must be torch.float32, got {dtype}"):
        g.row_scale("cuda", wrong, torch.empty((), dtype=dtype, device="meta"), dtype)


# ---- mismatches refused before C++ ---------------------------------------------------------------


@pytest.fixture
def no_kernel(monkeypatch):
    """Any call into fastpose._C fails the test: the check must refuse first."""
    def boom(name, backend):
        raise AssertionError(f"{name}_{backend} was reached despite a bad buffer")
    monkeypatch.setattr(g, "kernel", boom)


def _good(m=6, c=2, dtype=torch.float32):
    return {"points": torch.zeros(m, 3, dtype=dtype), "camera": torch.zeros(c, 9, dtype=dtype),
            "out": torch.zeros(m, 2, dtype=dtype)}


def _launch(bufs, dtype=torch.float32, backend="cpu", device=torch.device("cpu"), m=6, c=2):
    _native_projection().PROJECT_FORWARD.launch(backend, dtype, device, {"P": m, "C": c, "cam_div": 3}, bufs)


@pytest.mark.parametrize(("change", "match"), [
    (lambda b: b.update(camera=b["camera"].double()), r"buffer 'camera' \(role acc, storage dtype torch.float32\) "
                                                      r"must be torch.float32, got torch.float64"),
    (lambda b: b.update(points=b["points"].double()), r"buffer 'points' \(role storage.*got torch.float64"),
    (lambda b: b.update(out=torch.zeros(6, 3)), r"buffer 'out' must have shape \(6, 2\), got \(6, 3\)"),
    (lambda b: b.update(points=torch.zeros(3, 6).t()), r"buffer 'points' must be contiguous"),
    (lambda b: b.update(camera=torch.zeros(2, 9, device="meta")), r"buffer 'camera' must be on cpu, got meta"),
    (lambda b: b.pop("out"), r"buffer 'out' was not given"),
    (lambda b: b.update(out=None), r"buffer 'out' is required, got None"),
    (lambda b: b.update(extra=torch.zeros(1)), r"unexpected buffers \['extra'\]"),
    (lambda b: b.update(camera=[0.0] * 18), r"buffer 'camera' must be a torch.Tensor, got list"),
], ids=["acc-dtype", "storage-dtype", "shape", "contiguity", "device", "missing", "none", "extra", "type"])
def test_mismatched_buffers_are_refused(no_kernel, change, match):
    bufs = _good()
    change(bufs)
    with pytest.raises(ValueError, match=r"project_forward_cpu: " + match):
        _launch(bufs)


def test_half_storage_is_refused_on_the_cpu(no_kernel):
    b = _good(dtype=torch.float16)
    b["camera"] = b["camera"].float()
    with pytest.raises(ValueError, match=r"project_forward_cpu: the CPU kernels take float32 or float64 storage"):
        _launch(b, dtype=torch.float16)


def test_workspace_only_on_cuda(no_kernel):
    proj = _native_projection()
    sizes = {"P": 2, "C": 1, "cam_div": 2, "WS": 1}
    bufs = {"points": torch.zeros(2, 3), "camera": torch.zeros(1, 9), "keypoints": torch.zeros(2, 2),
            "weights": None, "loss": torch.zeros(()), "grad": None, "workspace": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"reprojection_forward_cpu: unexpected buffers \['workspace'\]"):
        proj.REPROJECTION_FORWARD.launch("cpu", torch.float32, torch.device("cpu"), sizes, bufs, {"scale": 0.5})
    del bufs["workspace"]
    with g.dry_run(), pytest.raises(ValueError, match=r"reprojection_forward_cuda: buffer 'workspace' was not given"):
        proj.REPROJECTION_FORWARD.launch("cuda", torch.float32, torch.device("cpu"), sizes, bufs, {"scale": 0.5})


def test_good_buffers_reach_the_kernel():
    """The checked launch passes pointers and sizes in the declared order (a real CPU call)."""
    pts = torch.tensor([[0.2, -0.1, 2.0], [0.4, 0.3, 3.0]], dtype=torch.float64)
    cam = H36M_CAMERA.reshape(1, 9).clone()
    out = torch.full((2, 2), float("nan"), dtype=torch.float64)
    _native_projection().PROJECT_FORWARD.launch("cpu", torch.float64, torch.device("cpu"),
                                                {"P": 2, "C": 1, "cam_div": 2},
                                                {"points": pts, "camera": cam, "out": out})
    from fastpose.reference import project_to_2d

    torch.testing.assert_close(out, project_to_2d(pts, cam[0]), rtol=1e-14, atol=1e-14)


def test_row_scale_refuses_non_contiguous_saved(no_kernel):
    saved = torch.zeros(4, 6).t()  # (6, 4) non-contiguous
    with pytest.raises(ValueError, match=r"row_scale_cpu: buffer 'src' must have shape \(2, 12\), got \(6, 4\)|"
                                         r"row_scale_cpu: buffer 'src' must be contiguous"):
        g.row_scale("cpu", saved, torch.ones(2), torch.float32)


def test_declarations_are_validated():
    with pytest.raises(ValueError, match=r"role must be one of \('storage', 'acc'\), got 'half'"):
        g.Buffer("x", "half", (1,))
    with pytest.raises(ValueError, match=r"backends must be among"):
        g.Buffer("x", "acc", (1,), backends=("rocm",))
    with pytest.raises(ValueError, match=r"buffers \['y'\] are not placed in args"):
        g.KernelSpec("k", (g.Buffer("y", "acc", (1,)),), args=("n",))
    with pytest.raises(ValueError, match=r"kernel 'row_scale' is already declared"):
        g.declare("row_scale", g.Buffer("src", "acc", (1,)), args=("src",))
