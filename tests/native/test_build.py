"""The compiled extension: what it reports it was built with, and what it registers."""

from __future__ import annotations

import re

import pytest
import torch

import fastpose
from fastpose import _ext
from fastpose.ops import _dispatch, _spec
from tests.native._util import require_ext


def test_build_info_reports_the_build():
    C = require_ext()
    info = _ext.build_info()
    assert info == C.build_info()
    assert info["version"] == fastpose.__version__, "stale build: rebuild with pip install -e ."
    assert re.match(r"(GCC|Clang|MSVC) \d+", info["compiler"]), info["compiler"]
    assert info["cxx_standard"] >= 201703
    assert info["openmp"] >= 201107, "built without OpenMP"
    assert info["omp_max_threads"] >= 1
    assert info["cpu_simd"]
    assert info["cuda"] is bool(C.WITH_CUDA) is _ext.cuda_built()
    if info["cuda"]:
        assert re.match(r"\d+\.\d+$", info["nvcc"])
        assert info["cuda_archs"] and all(isinstance(a, int) and a >= 50 for a in info["cuda_archs"])
        assert info["cuda_runtime_version"] > 0
        assert info["cuda_device_count"] >= 0
    else:
        assert info["nvcc"] is None and info["cuda_archs"] == []


def test_describe_for_fastpose_info():
    require_ext()
    d = _ext.describe()
    assert d["loaded"] is True and d["error"] is None and d["fix"] is None
    assert d["build_info"]["compiler"]


def test_cpu_backend_registered_for_every_op():
    require_ext()
    for op in _dispatch.OPS:
        assert "cpu" in _dispatch.available_backends(op), op
        impl = _dispatch.get_impl(op, "cpu")
        assert impl.devices == frozenset({"cpu"})
        assert impl.dtypes == frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
    assert "cpu" not in _dispatch.load_errors()


def test_cuda_backend_registered_iff_built_with_cuda():
    require_ext()
    registered = {op: "cuda" in _dispatch.available_backends(op) for op in _dispatch.OPS}
    if not _ext.cuda_built():
        assert not any(registered.values())
        assert "without its CUDA kernels" in _dispatch.load_errors()["cuda"]
        return
    why = _dispatch.load_errors().get("cuda")
    # built with CUDA: registered, unless its runtime cannot drive the GPU torch sees (then say why)
    assert all(registered.values()) or (why and "cannot use this GPU" in why), why
    if all(registered.values()):
        assert _dispatch.get_impl("soft_argmax_3d", "cuda").devices == frozenset({"cuda"})
        if torch.cuda.is_available():
            assert _ext.build_info()["cuda_device_count"] >= 1


@pytest.mark.parametrize("op", _dispatch.OPS)
def test_custom_ops_exist(op):
    require_ext()
    ns = torch.ops.fastpose
    name = _spec.spec(op).custom_op  # the op itself, or the op it reuses (the 2D head: the 3D head, D = 1)
    assert hasattr(ns, f"{name}_cpu") and hasattr(ns, f"{name}_cpu_backward")


def test_cpu_is_the_default_on_cpu_tensors():
    require_ext()
    x = torch.randn(1, 2, 3, 4, 5)
    impl = _dispatch.select_backend("soft_argmax_3d", x, (x,))
    assert impl.backend == "cpu"


def test_kernels_reject_bad_arguments_with_clear_errors():
    C = require_ext()
    x = torch.randn(2, 3, 4, 5)
    out = torch.empty(2, 3, 2)
    st = torch.empty(2, 3, 5)
    with pytest.raises(ValueError, match="float32 or float64.*float16"):
        C.soft_argmax_forward_cpu(2, x.data_ptr(), 6, 1, 4, 5, 2, out.data_ptr(), st.data_ptr(), 1)
    with pytest.raises(ValueError, match="ndim must be 3, or 2 with D == 1"):
        C.soft_argmax_forward_cpu(0, x.data_ptr(), 6, 2, 2, 5, 2, out.data_ptr(), st.data_ptr(), 1)
    with pytest.raises(ValueError, match="D, H, W >= 1"):
        C.soft_argmax_forward_cpu(0, x.data_ptr(), 6, 1, 0, 5, 2, out.data_ptr(), st.data_ptr(), 1)
    with pytest.raises(ValueError, match="logits must not be a null pointer"):
        C.soft_argmax_forward_cpu(0, 0, 6, 1, 4, 5, 2, out.data_ptr(), st.data_ptr(), 1)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        C.heatmap_mse_forward_cpu(0, x.data_ptr(), 6, 1, 4, 5, 2, out.data_ptr(), 0.0, 0, st.data_ptr(), 1)
    with pytest.raises(ValueError, match="expected ncams >= 1 and cam_div >= 1"):
        C.project_forward_cpu(0, x.data_ptr(), 10, st.data_ptr(), 0, 1, out.data_ptr(), 1)
