"""``fastpose info``: versions, extension build, Triton, GPU, and which backend each op would use."""

from __future__ import annotations

import argparse
import json
import platform

__all__ = ["add_parser", "collect"]


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print versions, the extension build and the backend of each op")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=_run)


def collect() -> dict:
    """Everything ``fastpose info`` reports, as a dict (also stored with benchmark results)."""
    import numpy
    import torch

    import fastpose
    from fastpose import _ext
    from fastpose.ops import _dispatch

    info: dict = {
        "fastpose": fastpose.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception as exc:  # optional extra
        info["triton"] = f"not installed ({type(exc).__name__}: {exc})"
    info["extension"] = _ext.describe()
    info["backend_load_errors"] = _dispatch.load_errors()
    info["backends"] = {op: _dispatch.available_backends(op) for op in _dispatch.OPS}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    chosen: dict = {}
    for dev in devices:
        x = torch.empty(1, 1, 2, 2, 2, device=dev)
        row = {}
        for op in _dispatch.OPS:
            order = _dispatch.PRIORITY.get(dev, ("reference",))
            row[op] = next((b for b in order if b in _dispatch.available_backends(op)
                            and not _dispatch.get_impl(op, b).not_supported_reasons(x)), "none")
        chosen[dev] = row
    info["default_backend_float32"] = chosen
    return info


def _run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"fastpose {info['fastpose']}  (python {info['python']}, torch {info['torch']}, "
          f"numpy {info['numpy']}, triton {info['triton']})")
    print(f"platform: {info['platform']}")
    print(f"GPU: {info['gpu'] or 'none (torch.cuda.is_available() is False)'}")
    ext = info["extension"]
    if ext.get("loaded"):
        print("extension fastpose._C: loaded")
        for k, v in ext.get("build_info", {}).items():
            print(f"  {k}: {v}")
    else:
        print(f"extension fastpose._C: NOT loaded -- {ext.get('error')}")
        print(f"  fix: {ext.get('fix')}")
    for be, why in info["backend_load_errors"].items():
        print(f"backend {be!r} unavailable: {why}")
    print("\nbackend used by default (float32 input, strict checks aside):")
    devs = list(info["default_backend_float32"])
    print(f"  {'op':<28}" + "".join(f"{d:<12}" for d in devs) + "registered")
    for op in info["backends"]:
        print(f"  {op:<28}" + "".join(f"{info['default_backend_float32'][d][op]:<12}" for d in devs)
              + ", ".join(info["backends"][op]))
    return 0
