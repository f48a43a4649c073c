"""Per-dtype tolerances, in one place (docs/ops.md).

``ATOL_RTOL[dtype]`` bounds a backend against the reference run in the same dtype when both
accumulate in float32 or better. For float16/bfloat16 the rule of :func:`assert_low_precision` is
used instead: the backend's error against a float64 reference is at most ``LOW_PRECISION_FACTOR``
times the error of the reference run in the same low precision (plus a tiny absolute slack).
"""

from __future__ import annotations

import torch

ATOL_RTOL = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (1e-1, 5e-2),
}

LOW_PRECISION_FACTOR = 2.0


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None,
                 what: str = "") -> None:
    dtype = dtype or actual.dtype
    atol, rtol = ATOL_RTOL[dtype]
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def assert_low_precision(actual: torch.Tensor, ref_same_dtype: torch.Tensor, ref64: torch.Tensor,
                         what: str = "", slack: float = 1e-3) -> None:
    """err(backend) <= 2 * err(reference in the same dtype) + slack * max|ref64|, both vs float64."""
    assert actual.shape == ref64.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(ref64.shape)}"
    if ref64.numel() == 0:
        return
    err = (actual.double() - ref64).abs().max().item()
    ref_err = (ref_same_dtype.double() - ref64).abs().max().item()
    scale = ref64.abs().max().item()
    bound = LOW_PRECISION_FACTOR * ref_err + slack * max(scale, 1e-6)
    assert err <= bound, f"{what}: error {err:.3e} > {LOW_PRECISION_FACTOR} x reference error {ref_err:.3e} + slack"
