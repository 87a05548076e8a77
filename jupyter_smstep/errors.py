"""The one error type users see.

Every problem found in a notebook is reported as a :class:`SmstepError` that
says *what* is wrong, *where* (cell and line) and *how to fix it*, so that the
magics, the CLI and the panel can all show it without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One validation finding, attached to a step cell where possible."""

    message: str
    fix: str = ""
    step: str | None = None
    line: int | None = None  # 1-based line in the cell, the %%step line being line 1
    severity: str = "error"  # "error" or "warning"

    def location(self) -> str:
        parts = []
        if self.step:
            parts.append(f"step '{self.step}'")
        if self.line:
            parts.append(f"line {self.line}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class SmstepError(Exception):
    """A problem the user can fix; carries every :class:`Problem` found."""

    def __init__(self, problems: list[Problem] | Problem | str, fix: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems, fix)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"- {p}".replace("\n", "\n  ") for p in self.problems]
        return "\n".join(lines)


@dataclass
class Report:
    """Errors and warnings collected while validating, before anything is uploaded."""

    problems: list[Problem] = field(default_factory=list)

    def error(self, message: str, fix: str = "", step: str | None = None, line: int | None = None) -> None:
        self.problems.append(Problem(message, fix, step, line, "error"))

    def warn(self, message: str, fix: str = "", step: str | None = None, line: int | None = None) -> None:
        self.problems.append(Problem(message, fix, step, line, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SmstepError(self.errors)
