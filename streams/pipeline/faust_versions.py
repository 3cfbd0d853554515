"""The library versions the Faust patches were tested against, checked before they install.

``faust_fixes.py`` and ``faust_fetch.py`` replace private methods of faust-streaming
(``Consumer.ack``, ``Consumer._new_offset``, ``Consumer._add_gap``,
``AIOKafkaConsumerThread._fetch_records``), override one (``Producer._settings_extra`` in
``faust_producer.py``) and read private state of aiokafka's consumer
(``_fetcher._records``). A release that renames or reshapes any of them would make a patch
silently wrong, which the chaos soak showed means lost customer requests. So a worker refuses
to start on a version the soak and ``tests/test_faust_fixes.py`` / ``tests/test_faust_fetch.py``
have not run against; pyproject.toml pins the same versions. To move to a new release: install
it, run those tests and ``python bench/chaos.py`` (two seeds), then add it here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

TESTED: dict[str, tuple[str, ...]] = {
    "faust-streaming": ("0.15.3",),
    "aiokafka": ("0.14.0",),
}
"""Distribution -> the versions the patches were tested with (soak, fix tests)."""


class UntestedLibraryError(RuntimeError):
    """A patched library is installed at a version the patches were not tested with."""


def check_patched_libraries(tested: dict[str, tuple[str, ...]] = TESTED) -> None:
    """Raise :class:`UntestedLibraryError` naming every untested installed version."""
    problems = []
    for dist, versions in tested.items():
        try:
            installed = version(dist)
        except PackageNotFoundError:
            installed = "not installed"
        if installed not in versions:
            problems.append(f"{dist} {installed} (tested: {', '.join(versions)})")
    if problems:
        pins = " ".join(f"'{dist}=={versions[-1]}'" for dist, versions in tested.items())
        raise UntestedLibraryError(
            "the Faust patches (streams/pipeline/faust_fixes.py, faust_fetch.py) were not "
            f"tested with {'; '.join(problems)}; install the tested versions: pip install {pins}"
        )
