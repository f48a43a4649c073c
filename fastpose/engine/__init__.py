"""Deployment engines: ONNX (ONNX Runtime), AOTInductor and TensorRT, and latency measurement."""
