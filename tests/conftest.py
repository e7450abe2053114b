"""Shared test settings: offline, headless plotting, seeded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread avoids OpenMP spin-waits that make a busy 2-core machine many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data():
    """The digits split every training test shares."""
    from qlearn.data import digits

    return digits.load_digits()


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory):
    """One model cache per test session (so SmolLM2's 20 s dequantization runs once), never the user's own."""
    return tmp_path_factory.mktemp("qlearn-cache")


@pytest.fixture
def llm_cache(llm_cache_dir, monkeypatch):
    """Point qlearn.data.llm's cache at the session's folder for the length of one test."""
    monkeypatch.setenv("QLEARN_CACHE_DIR", str(llm_cache_dir))
    return llm_cache_dir
