"""How much one alert may make the daemon keep: ``limits.max_label_bytes`` and
``limits.max_labels`` (README "Configuration").

Every label and annotation is stored in the journal and copied into runs, steps and
pages, so without a bound one sender could make the state store keep a megabyte per
label. The bounds apply to each set of labels or annotations in a payload: every
alert's ``labels`` and ``annotations``, and the group's ``groupLabels``,
``commonLabels`` and ``commonAnnotations``. A payload that breaks one is refused
whole (422, naming each field), so nothing of it is journaled.

This module only judges; it never trims a value (a trimmed label would be a
different alert, and could match a different rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# The 422 detail lists at most this many problems: enough to fix a sender, and a
# hostile body with 5,000 oversized alerts does not get a 5,000-entry answer.
MAX_PROBLEMS = 20
# Label names are quoted in field paths up to this many characters.
_NAME_SHOWN = 64


class _Alert(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...


class Payload(Protocol):
    """What the check reads: both the strict model and the fast decoder's mirror."""

    @property
    def alerts(self) -> Sequence[_Alert]: ...
    @property
    def groupLabels(self) -> Mapping[str, str]: ...
    @property
    def commonLabels(self) -> Mapping[str, str]: ...
    @property
    def commonAnnotations(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class Problem:
    field: str  # e.g. alerts.3.labels.instance, as the schema errors name fields
    message: str


class BoundsExceeded(ValueError):
    """A payload breaks a bound; ``problems`` names each field (at most MAX_PROBLEMS)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in self.problems))


def _shown(name: str) -> str:
    # A name can be long, and can hold a lone surrogate (a JSON "\ud800" escape) that
    # no UTF-8 encoder takes: the field path must be printable and short.
    text = name[:_NAME_SHOWN].encode("utf-8", "backslashreplace").decode("utf-8")
    return text + ("..." if len(name) > _NAME_SHOWN else "")


@dataclass(frozen=True, slots=True)
class LabelBounds:
    max_bytes: int = 4096
    max_labels: int = 64

    @property
    def max_chars(self) -> int:
        """A string of at most this many code points is within ``max_bytes`` whatever
        it holds (UTF-8 takes at most 4 bytes per code point): the fast decoder checks
        this in C, and leaves longer strings to the exact check."""
        return self.max_bytes // 4

    def check(self, payload: Payload) -> None:
        """Raise BoundsExceeded naming each field over a bound (alerts first)."""
        problems: list[Problem] = []
        for i, alert in enumerate(payload.alerts):
            self._check(f"alerts.{i}.labels", alert.labels, problems)
            self._check(f"alerts.{i}.annotations", alert.annotations, problems)
            if len(problems) >= MAX_PROBLEMS:
                break
        self._check("groupLabels", payload.groupLabels, problems)
        self._check("commonLabels", payload.commonLabels, problems)
        self._check("commonAnnotations", payload.commonAnnotations, problems)
        if problems:
            raise BoundsExceeded(problems[:MAX_PROBLEMS])

    def _check(self, where: str, entries: Mapping[str, str], problems: list[Problem]) -> None:
        if len(entries) > self.max_labels:
            problems.append(
                Problem(
                    where,
                    f"{len(entries)} entries; the limit is {self.max_labels} (limits.max_labels)",
                )
            )
        chars = self.max_chars
        for name, value in entries.items():
            for what, text in (("name", name), ("value", value)):
                if len(text) <= chars:
                    continue
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > self.max_bytes:
                    problems.append(
                        Problem(
                            f"{where}.{_shown(name)}",
                            f"{what} is {size} bytes of UTF-8; the limit is {self.max_bytes}"
                            " (limits.max_label_bytes)",
                        )
                    )
