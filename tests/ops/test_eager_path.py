"""The eager fast path of the native ops (fastpose/ops/native/_glue.py: ``eager_op``, issue 14).

In plain eager mode a native op calls its Python forward / backward directly (one
``torch.autograd.Function``, or no autograd node when nothing requires grad); everywhere something
could observe the op -- torch.compile, export, a dispatch mode, the profiler, functorch -- it runs
through the registered ``torch.library`` custom op. These tests force both paths on the same inputs
and require bitwise-equal outputs and gradients, and check that each context takes the path it must.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastpose import ops
from fastpose.ops import _dispatch, _spec
from fastpose.ops.native import _glue as g
from tests.ops._cases import as_outputs, make_inputs, public

NATIVE = [op for op in _spec.SPECS if "cpu" in _dispatch.available_backends(op)]
pytestmark = pytest.mark.skipif(not NATIVE, reason="the cpu backend (fastpose._C) is not built")

_DIRECT = "FastposeEager_"  # the autograd node class of the direct path
_CUSTOM = "GeneratedBackwardFor_fastpose_"  # the node class torch.library makes for a custom op


def _node_names(outs) -> set[str]:
    """Class names of every autograd node reachable from ``outs``."""
    seen, names = set(), set()
    stack = [o.grad_fn for o in outs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return names


def _run(op, x, args, grad_seed=0):
    """(outputs, gradient of sum_k c_k . out_k w.r.t. x, autograd node names) on the cpu backend."""
    x = x.detach().clone().requires_grad_(True)
    outs = as_outputs(public(op)(x, *args, backend="cpu"))
    names = _node_names(outs)
    gen = torch.Generator().manual_seed(grad_seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)).sum().double()
               for o in outs)
    (grad,) = torch.autograd.grad(loss, x)
    return [o.detach() for o in outs], grad, names


def _variants(op, args):
    """The op's argument variants: as made, without weights, and heatmap_mse's other reductions."""
    out = [args]
    names = [a.name for a in _spec.spec(op).args[1:]]
    if "weights" in names:
        k = names.index("weights")
        out.append(args[:k] + (None,) + args[k + 1:])
    if "reduction" in names:
        k = names.index("reduction")
        out += [args[:k] + (r,) + args[k + 1:] for r in ("sum", "none")]
    return out


def _bitwise(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
    assert torch.equal(a, b), f"{what}: max |diff| {(a.double() - b.double()).abs().max().item()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op", NATIVE)
def test_direct_and_custom_op_paths_are_bitwise_equal(op, dtype, fresh_seed):
    gen = torch.Generator().manual_seed(fresh_seed)
    x, args = make_inputs(op, gen, dtype, j=5)
    for k, a in enumerate(_variants(op, args)):
        out_d, grad_d, names_d = _run(op, x, a)
        with g.custom_ops_only():
            out_c, grad_c, names_c = _run(op, x, a)
        # each call took the path it was forced onto (and only that one)
        assert any(n.startswith(_DIRECT) for n in names_d), f"{op}: direct path not taken: {names_d}"
        assert not any(n.startswith(_CUSTOM) for n in names_d), names_d
        assert any(n.startswith(_CUSTOM) for n in names_c), f"{op}: custom op not taken: {names_c}"
        assert not any(n.startswith(_DIRECT) for n in names_c), names_c
        for i, (o_d, o_c) in enumerate(zip(out_d, out_c, strict=True)):
            _bitwise(o_d, o_c, f"{op} {dtype} variant {k} output {i} (seed {fresh_seed})")
        _bitwise(grad_d, grad_c, f"{op} {dtype} variant {k} gradient (seed {fresh_seed})")


@pytest.mark.parametrize("op", NATIVE)
def test_no_grad_calls_make_no_autograd_node(op):
    gen = torch.Generator().manual_seed(3)
    x, args = make_inputs(op, gen, torch.float32, j=4)
    direct = as_outputs(public(op)(x, *args, backend="cpu"))  # x does not require grad
    with torch.no_grad():
        direct_ng = as_outputs(public(op)(x.requires_grad_(True), *args, backend="cpu"))
    with g.custom_ops_only():
        custom = as_outputs(public(op)(x.detach(), *args, backend="cpu"))
    for d, d_ng, c in zip(direct, direct_ng, custom, strict=True):
        assert d.grad_fn is None and not d.requires_grad and d_ng.grad_fn is None and not d_ng.requires_grad
        _bitwise(d, c, f"{op} no-grad output")
        _bitwise(d_ng, c, f"{op} no_grad() output")


class _Capture(TorchDispatchMode):
    """Records the ``fastpose::`` ops that reach the dispatcher."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "fastpose":
            self.names.append(func.name())
        return func(*args, **(kwargs or {}))


def _case(op="heatmap_mse_2d"):
    x, args = make_inputs(op, torch.Generator().manual_seed(5), torch.float32, j=3)
    return x.requires_grad_(True), args


def test_a_dispatch_mode_sees_the_custom_ops():
    x, args = _case()
    with _Capture() as cap:
        ops.heatmap_mse_2d(x, *args, backend="cpu").backward()
    assert cap.names == ["fastpose::heatmap_mse_2d_cpu", "fastpose::heatmap_mse_2d_cpu_backward"], cap.names


def test_the_profiler_sees_the_custom_ops():
    x, args = _case()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        ops.heatmap_mse_2d(x, *args, backend="cpu").backward()
    names = {e.name for e in prof.events()}
    assert {"fastpose::heatmap_mse_2d_cpu", "fastpose::heatmap_mse_2d_cpu_backward"} <= names, sorted(names)


def test_a_backward_inside_a_dispatch_mode_uses_the_backward_custom_op():
    """Forward on the direct path, backward run where a mode watches: the backward op is dispatched."""
    x, args = _case()
    loss = ops.heatmap_mse_2d(x, *args, backend="cpu")
    assert any(n.startswith(_DIRECT) for n in _node_names([loss]))
    with _Capture() as cap:
        loss.backward()
    assert cap.names == ["fastpose::heatmap_mse_2d_cpu_backward"], cap.names


@pytest.mark.parametrize("force", [False, True], ids=["direct", "custom"])
def test_double_backward_raises_on_both_paths(force):
    """create_graph=True runs the backward custom op on both paths, so a second backward is refused
    as it always was (the ops are once-differentiable) instead of silently returning zeros."""
    x, args = _case()
    with g.custom_ops_only() if force else torch.enable_grad():
        loss = ops.heatmap_mse_2d(x, *args, backend="cpu")
        (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    assert grad.requires_grad
    with pytest.raises(RuntimeError, match=r"heatmap_mse_2d_cpu_backward.*no autograd formula"):
        grad.sum().backward()


def test_vmap_goes_through_the_custom_op():
    """functorch transforms see the custom op (its batching fallback): same values as a loop."""
    x, (mu, sigma, w, _red) = _case()
    xs = torch.stack([x.detach(), x.detach() * 0.5])
    batched = torch.vmap(lambda t: ops.heatmap_mse_2d(t, mu, sigma, w, "sum", backend="cpu"))(xs)
    looped = torch.stack([ops.heatmap_mse_2d(t, mu, sigma, w, "sum", backend="cpu") for t in xs])
    torch.testing.assert_close(batched, looped, rtol=1e-6, atol=0)


def _graph_targets(gm) -> set[str]:
    return {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}


@pytest.mark.parametrize("op", ["heatmap_mse_2d", "reprojection_loss"])
def test_torch_compile_traces_the_custom_ops(op):
    """Under torch.compile the forward and backward graphs hold the registered custom ops."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    graphs = {"fw": [], "bw": []}

    def recorder(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(_graph_targets(gm))
            return make_boxed_func(gm.forward)
        return compiler

    x, args = make_inputs(op, torch.Generator().manual_seed(7), torch.float32, j=3)
    torch._dynamo.reset()
    fn = public(op)
    compiled = torch.compile(lambda t: fn(t, *args, backend="cpu"), fullgraph=True,
                             backend=aot_autograd(fw_compiler=recorder("fw"), bw_compiler=recorder("bw")))
    xc = x.clone().requires_grad_(True)
    compiled(xc).backward()
    xe = x.clone().requires_grad_(True)
    fn(xe, *args, backend="cpu").backward()
    torch._dynamo.reset()
    fw = set().union(*graphs["fw"])
    bw = set().union(*graphs["bw"])
    assert f"fastpose.{op}_cpu.default" in fw, sorted(fw)
    assert f"fastpose.{op}_cpu_backward.default" in bw, sorted(bw)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=0, atol=0)


def test_export_holds_the_custom_op():
    class Loss(torch.nn.Module):
        def forward(self, heatmaps, joints):
            return ops.heatmap_mse_2d(heatmaps, joints, 1.5, backend="cpu")

    x, (mu, *_rest) = _case()
    program = torch.export.export(Loss(), (x.detach(), mu.float()))
    assert "fastpose.heatmap_mse_2d_cpu.default" in _graph_targets(program.graph_module)
    torch.testing.assert_close(program.module()(x.detach(), mu.float()),
                               ops.heatmap_mse_2d(x.detach(), mu.float(), 1.5, backend="cpu"), rtol=0, atol=0)


@pytest.mark.parametrize("use_reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_activation_checkpointing_gives_the_same_gradients_on_both_paths(use_reentrant):
    """torch.utils.checkpoint re-runs the forward (saved-tensor hooks / a second forward): the
    direct path's saved state behaves as the custom op's."""
    from torch.utils.checkpoint import checkpoint

    x, (mu, sigma, w) = make_inputs("soft_argmax_heatmap_mse_3d", torch.Generator().manual_seed(9), torch.float32,
                                    j=3)

    def head(t):
        coords, mse = ops.soft_argmax_heatmap_mse_3d(t * 1.5, mu, sigma, w, backend="cpu")
        return coords.square().sum() + mse

    grads = []
    for force in (False, True):
        xx = x.clone().requires_grad_(True)
        with g.custom_ops_only() if force else torch.enable_grad():
            checkpoint(head, xx, use_reentrant=use_reentrant).backward()
        grads.append(xx.grad)
    plain = x.clone().requires_grad_(True)
    head(plain).backward()
    _bitwise(grads[0], grads[1], "checkpointed gradient, direct vs custom op")
    _bitwise(grads[0], plain.grad, "checkpointed vs plain gradient")


def test_meta_tensors_get_the_fake_kernel():
    """A native op called on meta tensors (shape inference) runs the custom op's fake kernel, as before."""
    impl = _dispatch.get_impl("heatmap_mse_2d", "cpu").fn
    x = torch.empty(2, 3, 8, 8, device="meta", requires_grad=True)
    mu = torch.empty(2, 3, 2, device="meta")
    for reduction, shape in (("mean", ()), ("none", (2, 3))):
        out = impl(x, mu, 1.5, None, reduction)
        assert out.device.type == "meta" and tuple(out.shape) == shape
