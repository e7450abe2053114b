"""The method tests run small matmuls in loops: one thread, as the shared `one_thread` fixture sets."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _methods_one_thread(one_thread):
    yield
