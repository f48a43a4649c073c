"""Tests of fastpose.engine (ONNX, AOTInductor, TensorRT, latency)."""
