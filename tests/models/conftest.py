"""Shared fixtures of the models/ tests: the grat:: op library is loaded once per session
(GRAT_OPS_LIB, else build/kernels/libgrat_kernels.so), so torch.ops.grat.* resolve."""
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from models.ops import load_grat_ops  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def grat_ops():
    load_grat_ops()
