"""The machine record stored with every benchmark JSON: name, versions, threads, load, copy
bandwidth and git revision."""

from __future__ import annotations

import os
import platform
import socket
import subprocess

import torch

from benchmarks._memory import copy_bandwidth
from fastpose.ops import _dispatch

__all__ = ["machine_name", "machine_record"]


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def machine_name(device: str) -> str:
    """``benchmarks/results/<machine>``: the GPU's name (``nvidia-h100-80gb-hbm3``) or ``cpu-<host>``."""
    if device == "cuda" and torch.cuda.is_available():
        return _slug(torch.cuda.get_device_name(0))
    return "cpu-" + _slug(socket.gethostname().split(".")[0] or "local")


def _git_revision() -> str:
    env = os.environ.get("FASTPOSE_GIT_REVISION")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except Exception as exc:  # not a git checkout (a copied tree on a GPU machine)
        return f"unknown ({type(exc).__name__})"


def machine_record(device: str) -> dict:
    """Machine, versions, threads, load, copy bandwidth and git revision, stored with the results."""
    import numpy

    rec: dict = {
        "fastpose_machine": machine_name(device),
        "fastpose_device": device,
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_revision": _git_revision(),
        "backends": {op: _dispatch.available_backends(op) for op in _dispatch.OPS},
        "backend_load_errors": _dispatch.load_errors(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        # OpenMP / threading settings change CPU timings (OMP_WAIT_POLICY above all): kept.
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "FASTPOSE_", "CUDA_VISIBLE"))},
    }
    try:
        import triton

        rec["triton"] = triton.__version__
    except Exception as exc:
        rec["triton"] = f"not installed ({type(exc).__name__})"
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        rec.update(gpu=p.name, gpu_sm_count=p.multi_processor_count,
                   gpu_memory_bytes=p.total_memory, cuda=torch.version.cuda,
                   gpu_capability=f"{p.major}.{p.minor}")
    try:
        rec["copy_bandwidth_Bps"] = copy_bandwidth(device)
    except Exception as exc:  # out of memory on a busy device: the report then shows no roofline
        rec["copy_bandwidth_Bps"] = None
        rec["copy_bandwidth_error"] = f"{type(exc).__name__}: {exc}"
    return rec

