"""Deployment engines for the two models (and each fused op), and their latency.

=====================  ====================================================================
:mod:`.onnx`           ONNX export (fused ops lowered to standard operators by one translation
                       table), ``onnx.checker``, ONNX Runtime runner, parity
:mod:`.aoti`           AOTInductor packages (``.pt2``), CPU and CUDA, run without model code
:mod:`.tensorrt`       TensorRT engines from the ONNX file (written, NOT yet run: no TensorRT/GPU here)
:mod:`.latency`        warm-up + synchronised iterations, p50/p90/p99, throughput, side-by-side table
=====================  ====================================================================

Submodules import their heavy dependencies (onnx, onnxruntime, tensorrt) only when used; the
names below are loaded lazily.
"""

from __future__ import annotations

import importlib

from ._common import PRECISIONS, EngineLoadError, EngineMetadata, TensorSpec
from ._models import MODELS, Deployable, build_model, deployable, model_deployable, op_deployable

__all__ = [
    "MODELS",
    "PRECISIONS",
    "AotiRunner",
    "Deployable",
    "EngineLoadError",
    "EngineMetadata",
    "OnnxRunner",
    "TensorRTRunner",
    "TensorSpec",
    "build_model",
    "build_tensorrt_engine",
    "deployable",
    "export_aoti",
    "export_onnx",
    "model_deployable",
    "op_deployable",
    "run_latency",
]

_LAZY = {
    "OnnxRunner": (".onnx", "OnnxRunner"),
    "export_onnx": (".onnx", "export_onnx"),
    "AotiRunner": (".aoti", "AotiRunner"),
    "export_aoti": (".aoti", "export_aoti"),
    "TensorRTRunner": (".tensorrt", "TensorRTRunner"),
    "build_tensorrt_engine": (".tensorrt", "build_engine"),
    "run_latency": (".latency", "run_latency"),
}


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod, __name__), attr)
    raise AttributeError(f"module 'fastpose.engine' has no attribute {name!r}")
