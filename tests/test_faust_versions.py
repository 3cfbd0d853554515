"""The Faust patches refuse to install on library versions they were not tested with."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.pipeline.faust_versions import (
    TESTED,
    UntestedLibraryError,
    check_patched_libraries,
)


def test_the_installed_versions_are_the_tested_ones() -> None:
    check_patched_libraries()


def test_an_untested_version_is_refused_with_both_versions_named() -> None:
    with pytest.raises(UntestedLibraryError) as caught:
        check_patched_libraries({"faust-streaming": ("0.0.1",)})
    message = str(caught.value)
    assert "faust-streaming" in message
    assert "tested: 0.0.1" in message
    assert "pip install 'faust-streaming==0.0.1'" in message


def test_a_missing_library_is_refused() -> None:
    with pytest.raises(UntestedLibraryError, match="not installed"):
        check_patched_libraries({"no-such-distribution-xyz": ("1.0",)})


def test_pyproject_pins_exactly_the_tested_versions() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    for dist, versions in TESTED.items():
        assert f'"{dist}=={versions[-1]}"' in text
