"""What the pack validator reports: every problem at once, each with its file and line."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """ERROR blocks loading; WARNING is probably a mistake; INFO is worth knowing."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class PackError:
    """One problem. ``file`` is relative to the pack folder; ``line`` and ``column`` are
    1-based, 0 when the problem concerns a whole file or the whole pack. ``code`` is stable
    (tests and tools match on it); ``message`` is for people."""

    file: str
    line: int
    code: str
    message: str
    column: int = 0
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        prefix = "" if self.severity is Severity.ERROR else f"{self.severity}: "
        return f"{self.file}:{self.line}: {self.code}: {prefix}{self.message}"


class PackValidationError(ValueError):
    """Raised by ``load_pack`` when the pack has errors; ``errors`` holds all of them."""

    def __init__(self, errors: list[PackError]) -> None:
        self.errors = errors
        shown = [str(error) for error in errors if error.severity is Severity.ERROR]
        super().__init__(f"invalid agent pack ({len(shown)} errors):\n  " + "\n  ".join(shown))
