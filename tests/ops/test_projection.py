"""project_to_2d / reprojection_loss: every backend against the reference (generic tests) + specifics:
the camera broadcasts against the points' leading dims by torch's rule (issue 13 §2)."""

import re

import pytest
import torch

import fastpose.reference as R
from fastpose import ops
from fastpose.reference.projection import camera_broadcast_map, compact_camera
from tests._tolerances import assert_close
from tests.ops._cases import H36M_CAMERA, backends, run
from tests.ops._generic import *  # noqa: F403

OPS = ["project_to_2d", "reprojection_loss"]


def _points(gen, lead, j, dtype=torch.float64):
    """Camera-frame points (*lead, j, 3): z in [1.5, 4.5], some |x/z| > 1 (clamped)."""
    xy = torch.randn(*lead, j, 2, generator=gen, dtype=torch.float64) * 0.6
    z = torch.rand(*lead, j, 1, generator=gen, dtype=torch.float64) * 3 + 1.5
    pts = torch.cat([xy * z / 2, z], -1)
    if pts.numel():
        pts[..., 0, 0] = pts[..., 0, 2] * 1.5  # a clamped point in every pose
    return pts.to(dtype)


def _cameras(gen, shape):
    """Cameras (*shape, 9): the Human3.6M camera with a different f and c per entry (so a wrong
    camera row changes the result)."""
    cam = H36M_CAMERA.expand(*shape, 9).clone()
    cam[..., :4] += torch.randn(*shape, 4, generator=gen, dtype=torch.float64) * 0.05
    return cam


def _args(op, gen, pts, cam):
    if op == "project_to_2d":
        return (cam,)
    kp = torch.randn(*pts.shape[:-1], 2, generator=gen, dtype=torch.float64) * 0.5
    w = torch.rand(*pts.shape[:-1], generator=gen, dtype=torch.float64) + 0.5
    return cam, kp, w


def _work_dtype(backend):
    return torch.float64 if backend in backends("project_to_2d", "cpu", torch.float64) else torch.float32


# (points' leading dims, camera's leading dims): size-1 dims, missing dims, equal dims, a camera
# span in the middle (inner > 1 and outer repetition), an interleaved size-1 dim, one camera.
_FORMS = [
    ((2, 3), (2, 1)),
    ((2, 3), (1, 3)),
    ((2, 3), ()),
    ((2, 3), (3,)),
    ((2, 3), (2, 3)),
    ((2, 3), (1, 1)),
    ((2, 3, 2), (3, 1)),
    ((2, 3, 2), (2, 1, 2)),
    ((3,), (1,)),
    ((), ()),
]


@pytest.mark.parametrize(("lead", "cam_lead"), _FORMS, ids=[f"{a}-{b}" for a, b in _FORMS])
def test_camera_broadcasts_like_torch(op, backend, lead, cam_lead, fresh_seed):
    """Every backend, forward and backward, equals the reference with the camera explicitly
    expanded; on the fast backends the per-point results (projection, gradients) are bitwise equal
    to their own with the expanded camera (the per-point math is the same, only the camera row
    lookup differs). The loss is a sum whose CPU order follows the runs of points sharing a camera,
    so it is compared with a tolerance."""
    gen = torch.Generator().manual_seed(fresh_seed)
    dtype = _work_dtype(backend)
    pts = _points(gen, lead, 4, dtype)
    cam = _cameras(gen, cam_lead)
    args = _args(op, gen, pts, cam)
    full = cam.expand(*lead, 9)
    exp_out, exp_grad = run(getattr(R, op), pts.double(), (full, *args[1:]))
    out, grad = run(getattr(ops, op), pts, args, backend=backend)
    what = f"{op}[{backend}] points {lead} camera {tuple(cam.shape)} (seed {fresh_seed})"
    for o, e in zip(out, exp_out, strict=True):
        assert_close(o, e.to(o.dtype), dtype, what)
    assert_close(grad, exp_grad.to(grad.dtype), dtype, what + " gradient")
    if backend != "reference":
        same_out, same_grad = run(getattr(ops, op), pts, (full.contiguous(), *args[1:]), backend=backend)
        for o, s in zip(out, same_out, strict=True):
            if op == "project_to_2d":
                assert torch.equal(o, s), what + ": broadcast camera differs from the expanded camera"
            else:
                assert_close(o, s, dtype, what + ": loss with the expanded camera")
        assert torch.equal(grad, same_grad), what + ": gradient differs from the expanded camera's"


def test_non_contiguous_broadcast_camera(op, backend, fresh_seed):
    """Strided views as camera (B, 1, 9), (T, 9) and (9,) give the expanded camera's result."""
    gen = torch.Generator().manual_seed(fresh_seed)
    dtype = _work_dtype(backend)
    pts = _points(gen, (2, 3), 5, dtype)
    cams = (_cameras(gen, (2, 2, 2))[:, :1, 0], _cameras(gen, (3, 2))[:, 1], torch.stack([_cameras(gen, ()), H36M_CAMERA], -1)[:, 0])
    for cam in cams:  # (2, 1, 9), (3, 9), (9,)
        assert not cam.is_contiguous()
        args = _args(op, gen, pts, cam)
        exp_out, exp_grad = run(getattr(R, op), pts.double(), (cam.expand(2, 3, 9), *args[1:]))
        out, grad = run(getattr(ops, op), pts, args, backend=backend)
        what = f"{op}[{backend}] camera {tuple(cam.shape)} strides {cam.stride()}"
        for o, e in zip(out, exp_out, strict=True):
            assert_close(o, e.to(o.dtype), dtype, what)
        assert_close(grad, exp_grad.to(grad.dtype), dtype, what + " gradient")


@pytest.mark.parametrize("cam_lead", [(1, 3), (3,), (), (0, 1)])
def test_broadcast_camera_empty_batch(op, backend, cam_lead):
    gen = torch.Generator().manual_seed(0)
    pts = _points(gen, (0, 3), 4, torch.float32)
    args = _args(op, gen, pts, _cameras(gen, cam_lead))
    out, grad = run(getattr(ops, op), pts, args, backend=backend)
    assert grad.shape == pts.shape
    if op == "project_to_2d":
        assert out[0].shape == (0, 3, 4, 2)
    else:
        assert out[0].item() == 0.0


@pytest.mark.parametrize("cam_lead", [(2, 1), (3,)])
def test_gradcheck_broadcast_camera(op, backend, cam_lead):
    if backend not in backends(op, "cpu", torch.float64):
        pytest.skip(f"{backend} does not declare float64 for {op}")
    gen = torch.Generator().manual_seed(5)
    pts = _points(gen, (2, 3), 2)
    args = _args(op, gen, pts, _cameras(gen, cam_lead))
    fn = getattr(ops, op)
    assert torch.autograd.gradcheck(lambda t: fn(t, *args, backend=backend), (pts.requires_grad_(True),),
                                    atol=1e-7, rtol=1e-5)


def test_compile_and_opcheck_with_broadcast_camera(op, backend):
    """torch.compile(fullgraph=True) with camera (B, 1, 9) and (T, 9) (the generic test_opcheck and
    test_compile_fullgraph run on tests/ops/_cases.py's cameras, which are (B, 1, 9))."""
    gen = torch.Generator().manual_seed(3)
    pts = _points(gen, (2, 3), 4, torch.float32)
    fn = getattr(ops, op)
    for cam in (_cameras(gen, (2, 1)), _cameras(gen, (3,))):
        args = _args(op, gen, pts, cam)
        torch._dynamo.reset()
        compiled = torch.compile(lambda t, a=args: fn(t, *a, backend=backend), fullgraph=True, backend="aot_eager")
        out, grad = run(compiled, pts, ())
        exp_out, exp_grad = run(fn, pts, args, backend=backend)
        for o, e in zip(out, exp_out, strict=True):
            assert_close(o, e, torch.float32, f"{op}[{backend}] compiled, camera {tuple(cam.shape)}")
        assert_close(grad, exp_grad, torch.float32, f"{op}[{backend}] compiled gradient")


@pytest.mark.parametrize(("lead", "cam_lead", "hint"), [
    ((2, 4), (3,), None),
    ((2, 4), (2,), r"camera of shape \(2, 1, 9\)"),
    ((2, 4), (1, 2, 4), None),
    ((2, 4), (4, 2), None),
    ((), (2,), None),
])
def test_camera_that_does_not_broadcast_is_refused(op, lead, cam_lead, hint):
    gen = torch.Generator().manual_seed(0)
    pts = _points(gen, lead, 3, torch.float32)
    args = _args(op, gen, pts, _cameras(gen, cam_lead))
    shape = "(" + ", ".join(str(d) for d in (*cam_lead, 9)) + ")"
    with pytest.raises(ValueError) as info:
        getattr(ops, op)(pts, *args)
    msg = str(info.value)
    assert msg.startswith(f"{op}: camera's leading dims must broadcast to points' leading dims {lead}"), msg
    assert msg.endswith(f"got camera {shape}") or (hint and "got camera " + shape in msg), msg
    if hint:
        assert re.search(hint, msg), msg


def test_camera_broadcast_map():
    """The index map against torch's own broadcasting: row(q) picks the camera torch would."""
    cases = [((2, 3), (2, 1)), ((2, 3), (3,)), ((2, 3), ()), ((2, 3, 4), (3, 1)), ((2, 3, 4), (2, 1, 4)),
             ((5,), (5,)), ((1, 3), (1, 1)), ((2, 1, 3), (1, 1, 3)), ((2, 3), (2, 3))]
    for lead, cam_lead in cases:
        n_cam = 1
        for d in cam_lead:
            n_cam *= d
        ids = torch.arange(float(n_cam)).reshape(*cam_lead, 1).expand(*cam_lead, 9)  # camera k = all k
        want = ids.expand(*lead, 9)[..., 0].reshape(-1)  # torch's broadcast: camera id per leading row
        cam, ncams, inner = compact_camera(ids, lead, torch.float64)
        assert cam.shape == (ncams, 9) and cam.is_contiguous()
        q = torch.arange(want.numel())
        got = cam[(q // inner) % ncams, 0]
        assert torch.equal(got, want), (lead, cam_lead, got, want)
    # no expansion outside the span: (B, 1) over (B, T) keeps B rows, (T,) keeps T rows
    assert camera_broadcast_map((2, 1), (2, 1000)) == (0, 1, 2, 1000)
    assert camera_broadcast_map((1000,), (2, 1000)) == (1, 2, 1000, 1)
    assert camera_broadcast_map((), (7, 8)) == (2, 2, 1, 1)


def test_triton_results_do_not_depend_on_the_tile():
    """The per-point Triton kernels give the same bits with two different tiles (BLOCK), and the
    loss forward (the one reduction) has a single configuration, so autotuning by timing cannot
    change any result (kernels/projection.py: _LOSS_CONFIG)."""
    if "triton" not in backends("project_to_2d", "cpu"):
        pytest.skip("the triton backend is not available on the CPU here")
    import triton
    from fastpose.kernels import projection as K

    assert len(K._reproj_fwd_kernel.configs) == 1
    gen = torch.Generator().manual_seed(4)
    pts = _points(gen, (2, 3), 5, torch.float32).reshape(-1, 3).contiguous()
    p = pts.shape[0]
    cam = _cameras(gen, (3,)).float()  # (3, 9): point i uses row (i // 5) % 3
    g, c, chunk = 5, 3, 64
    grad_out = torch.randn(p, 2, generator=gen)
    kp = torch.randn(p, 2, generator=gen)
    w = torch.rand(p, generator=gen) + 0.5
    scale = torch.tensor([0.3])
    results = []
    for block in (16, 32):
        out = torch.empty(p, 2)
        gp = torch.empty(p, 3)
        gl = torch.empty(p, 3)
        grid = (triton.cdiv(p, chunk),)
        K._project_fwd_kernel.fn[grid](pts, cam, out, p, g, c, chunk, BLOCK=block)
        K._project_bwd_kernel.fn[grid](pts, cam, grad_out, gp, p, g, c, chunk, BLOCK=block)
        K._reproj_bwd_kernel.fn[grid](pts, cam, kp, w, scale, gl, p, g, c, chunk, HAS_W=True, BLOCK=block)
        results.append((out, gp, gl))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    full = cam[(torch.arange(p) // g) % c]  # the expanded camera, one row per point
    exp = R.project_to_2d(pts.double()[:, None], full.double())[:, 0]  # points (P, 1, 3), camera (P, 9)
    assert_close(results[0][0], exp.float(), torch.float32, "triton projection with the camera index map")


@pytest.mark.parametrize("lane_bytes", [64, 32, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("j", "per_frame"), [(17, True), (17, False), (3, True), (8, True)])
def test_cpu_results_do_not_depend_on_block_alignment(dtype, j, per_frame, lane_bytes, monkeypatch):
    """The CPU kernels compute blocks of consecutive points on lane vectors (64-, 32- or 16-byte by
    the CPU: 16 / 8 / 4 float32 lanes, 8 / 4 / 2 float64; FASTPOSE_PROJECTION_LANE_BYTES forces one, so
    every width's code runs here), each lane with its own point's camera: one camera for the block,
    two blended at a run boundary (per-frame cameras, J >= lanes) or gathered lane by lane
    (J < lanes), and the last points of each 4096-point chunk one by one. Rolling the sequences moves
    every point to another lane, block and chunk position (T J = 1700 / 300 / 800 points per
    sequence, not multiples of the lanes), so any camera lane taken from the wrong run changes bits:
    the projection and both gradients must come out bitwise rolled and bitwise equal to the 64-byte
    width's, the loss within float tolerance, and all of them must match the float64 reference."""
    if "cpu" not in backends("project_to_2d", "cpu", dtype):
        pytest.skip("the cpu backend is not available")
    gen = torch.Generator().manual_seed(11)
    n, t = 3, 100
    pts = _points(gen, (n, t), j, dtype)  # 3 x 100 x J points: crosses the 4096-point chunk for J >= 17
    cam = _cameras(gen, (n, t) if per_frame else (n, 1)).to(dtype)
    kp = (torch.randn(n, t, j, 2, generator=gen, dtype=torch.float64) * 0.5).to(dtype)
    w = (torch.rand(n, t, j, generator=gen, dtype=torch.float64) + 0.5).to(dtype)
    go = torch.randn(n, t, j, 2, generator=gen, dtype=torch.float64).to(dtype)

    def results(p, c, k, wt, g):
        x = p.clone().requires_grad_(True)
        uv = ops.project_to_2d(x, c, backend="cpu")
        (g_uv,) = torch.autograd.grad(uv, x, g)
        loss = ops.reprojection_loss(x, c, k, wt, backend="cpu")
        (g_loss,) = torch.autograd.grad(loss, x, torch.tensor(0.37, dtype=dtype))
        return uv.detach(), g_uv, loss.detach(), g_loss

    monkeypatch.setenv("FASTPOSE_PROJECTION_LANE_BYTES", "64")
    wide = results(pts, cam, kp, w, go)
    monkeypatch.setenv("FASTPOSE_PROJECTION_LANE_BYTES", str(lane_bytes))
    base = results(pts, cam, kp, w, go)
    rolled = results(*(a.roll(1, 0) for a in (pts, cam, kp, w, go)))
    what = f"{dtype} J={j} {'per-frame' if per_frame else 'per-sequence'} cameras, {lane_bytes}-byte lanes"
    for name, a, b in zip(("projection", "projection gradient", "loss gradient"), (base[0], base[1], base[3]),
                          (wide[0], wide[1], wide[3]), strict=True):
        assert torch.equal(a, b), f"{what}: {name} differs from the 64-byte lanes'"
    for name, a, b in zip(("projection", "projection gradient", "loss gradient"),
                          (base[0], base[1], base[3]), (rolled[0], rolled[1], rolled[3]), strict=True):
        assert torch.equal(a.roll(1, 0), b), f"{what}: {name} depends on the points' position"
    assert_close(rolled[2], base[2], dtype, what + ": loss")
    p64 = pts.double().requires_grad_(True)
    cam64 = cam.double().expand(n, t, 9)
    uv64 = R.project_to_2d(p64, cam64)
    (g_uv64,) = torch.autograd.grad(uv64, p64, go.double())
    loss64 = R.reprojection_loss(p64, cam64, kp.double(), w.double())
    (g_loss64,) = torch.autograd.grad(loss64, p64, torch.tensor(0.37, dtype=torch.float64))
    for name, got, want in zip(("projection", "projection gradient", "loss", "loss gradient"), base,
                               (uv64, g_uv64, loss64, g_loss64), strict=True):
        assert_close(got, want.detach().to(dtype), dtype, f"{what}: {name} against the reference")


def test_cpu_scale_saved_in_place_only_when_the_graph_is_freed():
    """fastpose.ops.native.projection._scale_saved(in_place=True) -- for the op's direct eager path,
    where only the autograd node holds the saved gradient -- scales the saved gradient in place only
    when autograd frees the graph after the pass; with retain_graph=True (a second backward reads
    it again) and outside a backward pass it writes a new buffer. The values are the same bits as
    the copying path's, and equal the reference's gradient."""
    if "cpu" not in backends("reprojection_loss", "cpu"):
        pytest.skip("the cpu backend is not available")
    from fastpose.ops.native import projection as P

    gen = torch.Generator().manual_seed(13)
    pts = _points(gen, (4, 9), 17, torch.float32)
    cam = _cameras(gen, (4, 1)).float()
    kp = (torch.randn(4, 9, 17, 2, generator=gen, dtype=torch.float64) * 0.5).float()
    scale = torch.tensor(0.37)
    seen = []

    class Direct(torch.autograd.Function):  # the op's direct eager path, reduced to this backward
        @staticmethod
        def forward(ctx, x):
            loss, saved = P._reprojection("cpu", x, cam, kp, None, True)
            ctx.mark_non_differentiable(saved)
            ctx.save_for_backward(saved)
            return loss, saved

        @staticmethod
        def backward(ctx, grad_loss, _unused):
            (saved,) = ctx.saved_tensors
            expected = P._scale_saved("cpu", saved, grad_loss, torch.float32)  # the copying path
            assert expected.data_ptr() != saved.data_ptr()
            got = P._scale_saved("cpu", saved, grad_loss, torch.float32, in_place=True)
            seen.append(got.data_ptr() == saved.data_ptr())
            assert torch.equal(got, expected)
            return got

    x = pts.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(Direct.apply(x)[0], x, scale)
    assert seen == [True], "with the graph freed the saved gradient should be scaled in place"
    loss = Direct.apply(x)[0]
    (g2,) = torch.autograd.grad(loss, x, scale, retain_graph=True)
    (g3,) = torch.autograd.grad(loss, x, scale)  # reads the saved gradient again: must be intact
    assert seen == [True, False, True], "retain_graph=True must leave the saved gradient intact"
    assert torch.equal(g1, g2) and torch.equal(g2, g3)
    p64 = pts.double().requires_grad_(True)
    (want,) = torch.autograd.grad(R.reprojection_loss(p64, cam.double().expand(4, 9, 9), kp.double()), p64,
                                  scale.double())
    assert_close(g1, want.float(), torch.float32, "in-place scaled gradient against the reference")
    _, saved = P._reprojection("cpu", pts, cam, kp, None, True)
    before = saved.clone()
    out = P._scale_saved("cpu", saved, scale, torch.float32, in_place=True)  # no backward pass running
    assert out.data_ptr() != saved.data_ptr() and torch.equal(saved, before)


def test_cpu_lane_width_override_is_checked(monkeypatch):
    """FASTPOSE_PROJECTION_LANE_BYTES accepts 16, 32 or 64 only, and says so naming the value."""
    if "cpu" not in backends("project_to_2d", "cpu"):
        pytest.skip("the cpu backend is not available")
    monkeypatch.setenv("FASTPOSE_PROJECTION_LANE_BYTES", "8")
    pts = _points(torch.Generator().manual_seed(0), (2,), 3, torch.float32)
    with pytest.raises(ValueError, match="FASTPOSE_PROJECTION_LANE_BYTES must be 16, 32 or 64 \\(or unset\\), got '8'"):
        ops.project_to_2d(pts, H36M_CAMERA.float(), backend="cpu")
