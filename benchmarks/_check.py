"""The check of every provider's outputs and gradient against float64 reference math."""

from __future__ import annotations

import torch

import fastpose.reference as R
from benchmarks._cases import Case
from benchmarks._timing import make_step

__all__ = ["check_against_reference"]


# The rule of tests/_tolerances.py, for every dtype: against float64 reference math on the same
# (rounded) inputs, a provider's error is at most LOW_PRECISION_FACTOR (2) times the error of the
# plain reference run in the same dtype, plus a slack of atol * max|expected| (atol of ATOL_RTOL for
# float32/float64, 1e-3 for float16/bfloat16). Relative to the reference's own error because some
# figures are ill-conditioned in float32 (the direction of a tiny reprojection error, a gradient of
# a mean over 10^7 voxels), so a fixed tolerance is either vacuous or fails the reference itself.
def _tolerance_rule(dtype: torch.dtype) -> tuple[float, float]:
    """(factor, normalised slack) for ``dtype``."""
    try:
        from tests._tolerances import ATOL_RTOL, LOW_PRECISION_FACTOR
    except ImportError:  # running outside the repository: the same numbers
        ATOL_RTOL = {torch.float64: (1e-10, 1e-9), torch.float32: (2e-5, 2e-4)}
        LOW_PRECISION_FACTOR = 2.0
    slack = ATOL_RTOL[dtype][0] if dtype in (torch.float32, torch.float64) else 1e-3
    return LOW_PRECISION_FACTOR, slack


def _expected(case: Case, x: torch.Tensor, args: tuple):
    """(float64 reference math, reference math in the case's dtype): each (outputs, gradient),
    with the cotangents of the provider's step (same shapes and seed)."""
    ref = getattr(R, case.op)
    x64 = x.detach().double()
    args64 = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args)
    exact = make_step(case, ref, x64, args64, "forward+backward").target()
    same = make_step(case, ref, x, args, "forward+backward").target()
    return exact, same


def _compare(actual: torch.Tensor, same: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype,
             what: str, failures: list[str]) -> float:
    """Append to ``failures`` when ``actual`` breaks the rule above; return its normalised error."""
    if actual.dtype != dtype:
        failures.append(f"{what} has dtype {actual.dtype}, expected {dtype}")
        return float("nan")
    if actual.shape != exact.shape:
        failures.append(f"{what} has shape {tuple(actual.shape)}, expected {tuple(exact.shape)}")
        return float("nan")
    if exact.numel() == 0:
        return 0.0
    e = exact.detach().double().cpu()
    scale = max(float(e.abs().max()), 1e-30)
    err = float((actual.detach().double().cpu() - e).abs().max()) / scale
    ref_err = float((same.detach().double().cpu() - e).abs().max()) / scale
    factor, slack = _tolerance_rule(dtype)
    if not (err <= factor * ref_err + slack):  # also catches NaN
        failures.append(f"{what}: error {err:.3e} x max|expected| > {factor} x reference's {ref_err:.3e} + {slack}")
    return err


_EXPECTED_CACHE: dict = {}


def check_against_reference(case: Case, x, args, outs, grad) -> dict:
    """Compare a provider's outputs / gradient with reference math; raise AssertionError on mismatch."""
    key = (case, x.device.type)
    if key not in _EXPECTED_CACHE:
        _EXPECTED_CACHE.clear()  # one entry: paper-size float64 references are hundreds of MB
        _EXPECTED_CACHE[key] = _expected(case, x, args)
    (exact_outs, exact_grad), (same_outs, same_grad) = _EXPECTED_CACHE[key]
    dt = case.torch_dtype
    result: dict = {}
    failures: list[str] = []
    if outs is not None:
        if len(outs) != len(exact_outs):
            failures.append(f"{len(outs)} outputs, expected {len(exact_outs)}")
        for k, (o, s, e) in enumerate(zip(outs, same_outs, exact_outs, strict=False)):
            result[f"output{k}_max_rel_err"] = _compare(o, s, e, dt, f"output {k}", failures)
    if grad is not None:
        result["grad_max_rel_err"] = _compare(grad, same_grad, exact_grad, dt, "gradient", failures)
    if failures:
        raise AssertionError(f"{case.op} [{case.id}] does not match the reference: " + "; ".join(failures))
    return result

