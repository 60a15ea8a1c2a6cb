"""``{labels.NAME}`` placeholders in YAML runbooks, and the checks on their labels.

A placeholder may name only a label the runbook declares with a validator kind
(``remediator.validation.label_kinds``); anything else in braces is refused when
the file is loaded, so a typo cannot become a literal ``{labels.dployment}`` in a
command. At run time every value passes its validator before it is substituted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from remediator.errors import InputRejected
from remediator.validation.label_kinds import KINDS

_PLACEHOLDER = re.compile(r"\{labels\.([A-Za-z_][A-Za-z0-9_]{0,63})\}")


class SpecError(ValueError):
    """A YAML runbook that cannot be loaded; the message says what and where."""


@dataclass(frozen=True)
class Template:
    """A string with ``{labels.NAME}`` placeholders, split into literal and label parts."""

    parts: tuple[tuple[str, bool], ...]  # (text, is_label)

    @classmethod
    def parse(cls, text: object, kinds: Mapping[str, str], field: str) -> Template:
        if not isinstance(text, str | int) or isinstance(text, bool):
            raise SpecError(f"{field}: expected a string")
        raw = str(text)
        parts: list[tuple[str, bool]] = []
        at = 0
        for match in _PLACEHOLDER.finditer(raw):
            parts.append((raw[at : match.start()], False))
            name = match.group(1)
            if name not in kinds:
                raise SpecError(
                    f"{field}: label {name!r} has no validator: declare it under the"
                    f" runbook's labels (one of {sorted(KINDS)})"
                )
            parts.append((name, True))
            at = match.end()
        parts.append((raw[at:], False))
        literal = "".join(text for text, is_label in parts if not is_label)
        if "{" in literal or "}" in literal:
            raise SpecError(f"{field}: only {{labels.NAME}} placeholders may use braces")
        return cls(tuple(p for p in parts if p[1] or p[0]))

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(text for text, is_label in self.parts if is_label)

    def single_label(self) -> str | None:
        """The label's name when the template is exactly one placeholder."""
        if len(self.parts) == 1 and self.parts[0][1]:
            return self.parts[0][0]
        return None

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(values[text] if is_label else text for text, is_label in self.parts)


def checked_labels(
    labels: Mapping[str, str], kinds: Mapping[str, str], wanted: frozenset[str]
) -> dict[str, str]:
    """The ``wanted`` labels, each passed through its declared validator."""
    values = {}
    for name in sorted(wanted):
        if name not in labels:
            raise InputRejected(name, "the alert has no such label")
        values[name] = KINDS[kinds[name]](labels[name], name)
    return values


def bind_value(template: Template, values: Mapping[str, str], kinds: Mapping[str, str]) -> object:
    """A SQL bind: a lone integer or date label is bound as that type, the rest as text."""
    name = template.single_label()
    if name is not None and kinds[name] == "integer":
        return int(values[name])
    if name is not None and kinds[name] == "date":
        return date.fromisoformat(values[name])
    return template.render(values)
