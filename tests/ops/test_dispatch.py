"""Backend choice: backend=, use_backend, FASTPOSE_BACKEND, priority, strict mode, clear errors."""

import pytest
import torch

import fastpose
from fastpose import ops
from fastpose.ops import _dispatch


@pytest.fixture
def probe(monkeypatch):
    """Temporarily register a 'triton' impl of soft_argmax_2d that records calls and refuses
    inputs with more than 4 joints, and make it the top CPU priority."""
    calls = []
    impls = dict(_dispatch._REGISTRY.impls["soft_argmax_2d"])
    monkeypatch.setitem(_dispatch._REGISTRY.impls, "soft_argmax_2d", impls)
    monkeypatch.setitem(_dispatch.PRIORITY, "cpu", ("triton", "reference"))
    monkeypatch.setattr(_dispatch._REGISTRY, "load_errors", {})
    ref = impls["reference"].fn

    def fn(logits):
        calls.append(logits.shape)
        return ref(logits)

    _dispatch.register_impl("soft_argmax_2d", "triton", fn, devices=("cpu",),
                            reasons=lambda x: ["more than 4 joints"] if x.shape[1] > 4 else [])
    monkeypatch.delenv("FASTPOSE_BACKEND", raising=False)
    monkeypatch.delenv("FASTPOSE_STRICT", raising=False)
    return calls


def test_priority_picks_first_backend_that_serves(probe):
    ops.soft_argmax_2d(torch.randn(1, 3, 4, 5))
    assert probe == [(1, 3, 4, 5)]


def test_silent_fallback_allowed_unless_strict(probe, monkeypatch):
    x = torch.randn(1, 6, 4, 5)
    ops.soft_argmax_2d(x)  # falls back to reference: allowed
    assert probe == []
    monkeypatch.setenv("FASTPOSE_STRICT", "1")
    with pytest.raises(_dispatch.BackendNotSupportedError, match="more than 4 joints"):
        ops.soft_argmax_2d(x)


def test_explicit_backend_beats_context_and_env(probe, monkeypatch):
    x = torch.randn(1, 3, 4, 5)
    monkeypatch.setenv("FASTPOSE_BACKEND", "triton")
    with fastpose.use_backend("triton"):
        ops.soft_argmax_2d(x, backend="reference")
    assert probe == []
    with fastpose.use_backend("reference"):
        ops.soft_argmax_2d(x)  # context beats the environment
    assert probe == []
    ops.soft_argmax_2d(x)  # environment
    assert len(probe) == 1


def test_requested_backend_that_cannot_serve_explains(probe):
    with pytest.raises(_dispatch.BackendNotSupportedError, match="more than 4 joints"):
        ops.soft_argmax_2d(torch.randn(1, 6, 4, 5), backend="triton")
    _dispatch.register_impl("soft_argmax_2d", "triton", lambda x: x, devices=("cpu",),
                            dtypes=(torch.float16,))
    with pytest.raises(_dispatch.BackendNotSupportedError, match="dtype torch.float32 not served"):
        ops.soft_argmax_2d(torch.randn(1, 2, 4, 5), backend="triton")
    with pytest.raises(_dispatch.BackendNotSupportedError, match="device 'meta' not served"):
        ops.soft_argmax_2d(torch.randn(1, 2, 4, 5, dtype=torch.float16, device="meta"), backend="triton")


def test_unknown_backend_names_are_rejected(monkeypatch):
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        ops.soft_argmax_2d(x, backend="fast")
    with pytest.raises(ValueError, match="use_backend"):
        with fastpose.use_backend("fast"):
            pass
    monkeypatch.setenv("FASTPOSE_BACKEND", "nope")
    with pytest.raises(ValueError, match="FASTPOSE_BACKEND"):
        ops.soft_argmax_2d(x)


def test_missing_backend_reports_load_error(monkeypatch):
    impls = {"reference": _dispatch._REGISTRY.impls["soft_argmax_2d"]["reference"]}
    monkeypatch.setitem(_dispatch._REGISTRY.impls, "soft_argmax_2d", impls)
    monkeypatch.setattr(_dispatch._REGISTRY, "load_errors", {"cuda": "built without nvcc"})
    with pytest.raises(_dispatch.BackendNotSupportedError, match="built without nvcc"):
        ops.soft_argmax_2d(torch.randn(1, 2, 3, 3), backend="cuda")


def test_strict_mode_notices_a_backend_that_failed_to_load(monkeypatch):
    impls = {"reference": _dispatch._REGISTRY.impls["soft_argmax_3d"]["reference"]}
    monkeypatch.setitem(_dispatch._REGISTRY.impls, "soft_argmax_3d", impls)
    monkeypatch.setattr(_dispatch._REGISTRY, "load_errors", {"cpu": "ImportError: fastpose._C"})
    monkeypatch.delenv("FASTPOSE_BACKEND", raising=False)
    x = torch.randn(1, 2, 3, 3, 3)
    monkeypatch.setenv("FASTPOSE_STRICT", "0")
    ops.soft_argmax_3d(x)
    monkeypatch.setenv("FASTPOSE_STRICT", "1")
    with pytest.raises(_dispatch.BackendNotSupportedError, match="fastpose._C"):
        ops.soft_argmax_3d(x)


def test_not_supported_reasons_is_public_and_empty_for_reference():
    x = torch.randn(1, 2, 3, 3)
    assert ops.not_supported_reasons("soft_argmax_2d", "reference", x, x) == []
    assert "reference" in ops.available_backends("soft_argmax_2d")


def test_use_backend_is_per_thread():
    """A use_backend block in one thread is invisible to another (the stack is a ContextVar)."""
    import threading

    seen = {}
    entered, release = threading.Event(), threading.Event()

    def inside():
        with fastpose.use_backend("reference"):
            seen["inside"] = _dispatch._BACKEND_STACK.get()
            entered.set()
            release.wait(10)

    def outside():
        entered.wait(10)
        seen["outside"] = _dispatch._BACKEND_STACK.get()
        release.set()

    threads = [threading.Thread(target=inside), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"inside": ("reference",), "outside": ()}
    assert _dispatch._BACKEND_STACK.get() == ()


def test_use_backend_is_per_asyncio_task():
    """Two tasks interleaving inside their own use_backend blocks each see only their own."""
    import asyncio

    async def task(name, other_ready, mine_ready, out):
        with fastpose.use_backend(name):
            mine_ready.set()
            await other_ready.wait()  # the other task is now inside its block too
            out[name] = _dispatch._BACKEND_STACK.get()

    async def main():
        out = {}
        a, b = asyncio.Event(), asyncio.Event()
        await asyncio.gather(task("reference", b, a, out), task("cpu", a, b, out))
        return out

    assert asyncio.run(main()) == {"reference": ("reference",), "cpu": ("cpu",)}


def test_nested_use_backend_restores_the_outer_block():
    with fastpose.use_backend("cpu"):
        with fastpose.use_backend("reference"):
            assert _dispatch._BACKEND_STACK.get() == ("cpu", "reference")
        assert _dispatch._BACKEND_STACK.get() == ("cpu",)
    assert _dispatch._BACKEND_STACK.get() == ()


def test_kernels_never_import_fastpose_ops():
    """No import cycle: the Triton kernels (kernels/, installed as fastpose.kernels) do not import
    fastpose.ops; the dispatcher imports them and registers kernels.implementations()."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "kernels"
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                names = [a.name for a in node.names]
                if mod.startswith("fastpose.ops") or mod.startswith("..ops") or (mod == ".." and "ops" in names):
                    offenders.append(f"{path.name}: from {mod} import {names}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("fastpose.ops")]
    assert not offenders, offenders


def test_use_backend_under_torch_compile_fullgraph():
    """torch.compile cannot trace ContextVar.get: the stack is read once at trace time, so a
    fullgraph compile inside a block works and uses the block's backend."""
    x = torch.randn(1, 2, 4, 5)
    with fastpose.use_backend("reference"):
        f = torch.compile(lambda t: ops.soft_argmax_2d(t), fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(f(x), ops.soft_argmax_2d(x, backend="reference"))
