"""Helpers of the native-extension tests: the loaded fastpose._C (or a skip/fail), and the
reference math to compare with."""

from __future__ import annotations

import os

import pytest

from fastpose import _ext

__all__ = ["require_ext"]


def require_ext():
    """The loaded ``fastpose._C``. A missing extension fails these tests (CI builds it), unless the
    package was installed with FASTPOSE_ALLOW_NO_EXT=1 on purpose, which skips them."""
    mod = _ext.get()
    if mod is None:
        if os.environ.get("FASTPOSE_ALLOW_NO_EXT", "0") not in ("", "0"):
            pytest.skip(f"fastpose._C not built (FASTPOSE_ALLOW_NO_EXT=1): {_ext.error()}")
        pytest.fail(f"fastpose._C is not loaded: {_ext.error()}; fix: {_ext.fix()}")
    return mod
