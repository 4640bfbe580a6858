"""Problems found in a deployment file, each tied to a YAML path and line."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.config.text import printable as printable  # re-exported: the CLI imports it from here

Path = tuple[str | int, ...]
#: Longest message kept (a message quoting many names is cut, with "…").
MAX_MESSAGE = 1000


class Severity(StrEnum):
    """How bad a finding is: errors stop a render, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


def format_path(path: Path) -> str:
    """Render ``("trunks", 0, "inbound", "acl", 1)`` as ``trunks[0].inbound.acl[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if len(part) <= 60 else part[:60] + "…"
            out += f".{key}" if out else key
    return printable(out) or "(top level)"


@dataclass(frozen=True)
class Diagnostic:
    """One finding: where it is (YAML path, line, column) and what is wrong.

    The message and the file name are kept printable (one line, no control characters), whatever
    values they quote, so every way of showing a finding is safe for a terminal or a log.
    """

    line: int
    column: int
    path: Path
    message: str
    severity: Severity = Severity.ERROR
    source: str = ""

    def __post_init__(self) -> None:
        message = self.message if len(self.message) <= MAX_MESSAGE else self.message[:MAX_MESSAGE] + "…"
        object.__setattr__(self, "message", printable(message))
        object.__setattr__(self, "source", printable(self.source))

    def sort_key(self) -> tuple[int, int, str, str]:
        """Order of appearance in the file."""
        return (self.line, self.column, self.dotted_path, self.message)

    @property
    def dotted_path(self) -> str:
        """The YAML path in dotted form."""
        return format_path(self.path)

    def __str__(self) -> str:
        where = f"{self.source}:" if self.source else ""
        return f"{where}{self.line}:{self.column}: {self.severity.value}: {self.dotted_path}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form, for ``--json`` output."""
        return {
            "severity": self.severity.value,
            "path": self.dotted_path,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "file": self.source,
        }


def sort(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Distinct diagnostics in file order."""
    return sorted(set(diagnostics), key=Diagnostic.sort_key)


class DeploymentError(Exception):
    """Raised when a deployment file has errors; carries every finding at once."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sort(diagnostics)
        errors = [d for d in self.diagnostics if d.severity is Severity.ERROR]
        head = f"{len(errors)} error(s) in deployment file"
        super().__init__(head + "\n" + "\n".join(str(d) for d in errors))

    @property
    def errors(self) -> list[Diagnostic]:
        """Only the errors (not the warnings)."""
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]
