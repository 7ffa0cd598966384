import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


@pytest.fixture(scope="module")
def server():
    s = harness.Server()
    yield s
    assert s.alive(), "server died:\n" + s.logs()
    assert s.stop() == 0, s.logs()
