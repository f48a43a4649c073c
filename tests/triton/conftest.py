"""Fixtures of the Triton-specific tests.

The kernels run on CUDA when there is a GPU, else on the CPU through the Triton interpreter
(``TRITON_INTERPRET=1``, set by tests/conftest.py before anything imports the kernels; set here
too, for a run of this folder alone). Everything is skipped when triton is not installed.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _import_kernels():
    """The Triton backend package: ``fastpose.kernels`` once installed, else the source folder."""
    pytest.importorskip("triton")
    import fastpose.ops  # noqa: F401  (loads the backends first, so nothing registers twice)

    try:
        return importlib.import_module("fastpose.kernels")
    except ModuleNotFoundError:
        return importlib.import_module("kernels")


@pytest.fixture(scope="session")
def K():
    """The kernels package (modules soft_argmax, heatmap_mse, soft_argmax_heatmap_mse, projection)."""
    return _import_kernels()


@pytest.fixture(scope="session")
def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
