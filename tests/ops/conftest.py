"""Parametrise the generic op tests over every op of the module's ``OPS`` and every backend
registered for it that serves the CPU (the Triton backend serves the CPU under TRITON_INTERPRET=1).
GPU variants live in tests/gpu/."""

import os
import secrets

import pytest

from tests.ops._cases import backends


def pytest_generate_tests(metafunc):
    ops = getattr(metafunc.module, "OPS", None)
    if ops is None:
        return
    if "op" in metafunc.fixturenames and "backend" in metafunc.fixturenames:
        pairs = [(op, be) for op in ops for be in backends(op, "cpu")]
        metafunc.parametrize(("op", "backend"), pairs, ids=[f"{o}-{b}" for o, b in pairs])
    elif "op" in metafunc.fixturenames:
        metafunc.parametrize("op", ops)


@pytest.fixture
def fresh_seed(request):
    """A fresh random seed per test (printed on failure); FASTPOSE_TEST_SEED pins it to reproduce."""
    seed = int(os.environ.get("FASTPOSE_TEST_SEED", secrets.randbelow(2**31)))
    request.node.user_properties.append(("seed", seed))
    return seed
