"""No doc, help text or code comment cites a file that is not in the repository.

A newcomer who follows a reference to DESIGN.md (kept outside the repo) or to a
renamed file hits a dead end. Every path-like word ending in a file extension, in
the README, the docs, the deploy files, the package's sources and the CLI's --help
texts, must name a file of the repository (relative to the repository, to the
citing file, or to the package).
"""

from __future__ import annotations

import re
from pathlib import Path

from remediator import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "remediator"
# A path-like word: segments of [\w.-] joined by "/", ending in a known extension.
CITED = re.compile(
    r"(?<![\w/.$<{-])((?:\.{0,2}/)?[\w.-]+(?:/[\w.-]+)*\.(?:md|py|ya?ml|json|toml|txt|sql|cfg|ini))\b"
)
# Not files of this repository: names in other projects (STYLE examples), example
# paths of a deployment, and files the user creates.
ELSEWHERE = (
    "/etc/",
    "/var/",
    "kubeconfig",
    "alertmanager.yml",
    "config.yaml",
    "remediator.yaml",
    "prometheus.yml",
    "PAYLOAD.json",
    "state.db",
    "RIGHTS_REGISTRY.yaml",
)


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    files += [p for p in (ROOT / "deploy").rglob("*") if p.suffix in (".yaml", ".yml", ".md")]
    files += list(PACKAGE.rglob("*.py"))
    return [f for f in files if f.is_file()]


def _exists(cited: str, citing: Path) -> bool:
    name = cited.lstrip("./") if not cited.startswith("../") else cited
    bases = (ROOT, citing.parent, PACKAGE, ROOT / "deploy")
    return any((base / name).exists() or (base / cited).exists() for base in bases)


def _missing(text: str, citing: Path) -> list[str]:
    found = []
    for m in CITED.finditer(text):
        cited = m.group(1)
        if any(part in cited for part in ELSEWHERE) or cited.startswith("jobs."):
            continue
        if "/" not in cited and not cited.endswith(".md"):
            continue  # a bare module or file name (``settings.py``): checked below
        if not _exists(cited, citing):
            found.append(cited)
    return found


def test_docs_and_sources_cite_only_files_in_the_repo() -> None:
    missing = {
        str(f.relative_to(ROOT)): bad
        for f in _sources()
        if (bad := _missing(f.read_text(encoding="utf-8"), f))
    }
    assert missing == {}


def test_help_texts_cite_only_files_in_the_repo() -> None:
    parser = cli.build_parser()
    texts = [parser.format_help()]
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        texts += [sub.format_help() for sub in action.choices.values()]  # type: ignore[union-attr]
    help_text = "\n".join(texts)
    assert "DESIGN" not in help_text
    assert _missing(help_text, ROOT) == []


def test_the_scan_finds_a_missing_file() -> None:
    assert _missing("see DESIGN.md and docs/nothing.md", ROOT) == ["DESIGN.md", "docs/nothing.md"]
