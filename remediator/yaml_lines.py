"""YAML reading that remembers lines, so rule and runbook errors say file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LINE = "__line__"


class LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping (as key ``__line__``)."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE] = node.start_mark.line + 1
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_files(path: str | Path) -> list[Path]:
    """The ``*.yaml`` and ``*.yml`` files of a directory, or the one file named."""
    p = Path(path)
    if p.is_dir():
        return sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
    return [p]


def read(path: Path, errors: list[str]) -> Any:
    """The document in ``path``, or None with the reason appended to ``errors``."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=LineLoader)  # noqa: S506 - SafeLoader subclass
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc.strerror}")
    except UnicodeDecodeError:
        errors.append(f"{path}: not UTF-8 text")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        errors.append(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}")
    return None
