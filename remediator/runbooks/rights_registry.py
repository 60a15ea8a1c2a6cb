"""RB-04 step 1, as an action: the provider's entry in the rights registry YAML, shown
in the page.

The runbook reads ``.ops/RIGHTS_REGISTRY.yaml`` (``grep -A5 "FMP:"``); the app reads
the same file, so a provider marked ``export: allow`` there is the violation's likely
cause. The file is found where the rule's params say: ``rights_registry_path`` (an
absolute path on the daemon's filesystem, e.g. a mounted ConfigMap) or
``rights_registry_configmap`` (``name`` or ``name/key`` in the daemon's namespace;
key ``RIGHTS_REGISTRY.yaml`` by default). Without either, the step is skipped with
that reason.

The registry is the application's source of truth and lives in its repository: this
step only reads it. Changing ``allow`` to ``restricted`` there is left to a human (the
page says so); the database block (step 3) is what takes effect at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from remediator.errors import TargetError
from remediator.runbook_api.context import Clients
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome

DEFAULT_KEY = "RIGHTS_REGISTRY.yaml"
_MAX_BYTES = 1024 * 1024
_FIELDS = ("export", "require_license", "attribution")


def check_path(value: str | None) -> str | None:
    if value is not None and not Path(value).is_absolute():
        raise ValueError("an absolute path (the daemon's working directory is no anchor)")
    return value


def check_configmap(value: str | None) -> str | None:
    if value is None:
        return None
    name, _, key = value.partition("/")
    if not name or len(value) > 253 + 254 or any(c.isspace() for c in value) or "/" in key:
        raise ValueError("a ConfigMap name, or name/key")
    return value


def _read_file(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise StepFailed(f"{path} is larger than {_MAX_BYTES} bytes: not a rights registry")
    return data.decode("utf-8", "replace")


async def _text(
    clients: Clients, path: str | None, configmap: str | None
) -> tuple[str, str] | None:
    """(where, YAML text) of the configured registry, or None when none is configured."""
    if path:
        try:
            return path, await asyncio.to_thread(_read_file, path)
        except OSError as exc:
            raise StepFailed(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from exc
    if configmap:
        name, _, key = configmap.partition("/")
        key = key or DEFAULT_KEY
        kube = clients.need_kubernetes()
        try:
            data = await kube.read_config_map(name)
        except TargetError as exc:
            raise StepFailed(f"cannot read configmap {name}: {str(exc)[:200]}") from exc
        if key not in data:
            raise StepFailed(f"configmap {name} has no key {key} (keys: {sorted(data)[:10]})")
        return f"configmap {name}/{key}", data[key]
    return None


def entry(doc: object, provider: str) -> tuple[str, Mapping[object, object]] | None:
    """The provider's entry (its key's own spelling), matched case-insensitively; a
    top-level ``providers:`` mapping is looked into as well."""
    if isinstance(doc, Mapping) and isinstance(doc.get("providers"), Mapping):
        doc = doc["providers"]
    if not isinstance(doc, Mapping):
        return None
    for key, value in doc.items():
        if str(key).lower() == provider.lower() and isinstance(value, Mapping):
            return str(key), value
    return None


@dataclass(frozen=True)
class ReadRegistry:
    """Read the provider's entry where the rule's params say the registry is (a file,
    or a ConfigMap of the daemon's namespace; neither: skipped, with that reason)."""

    provider: str
    path: str | None
    configmap: str | None

    mutates: ClassVar[bool] = False

    @property
    def needs(self) -> Need | None:
        return "kubernetes" if self.configmap and not self.path else None

    def render(self) -> str:
        provider = self.provider
        if self.path:
            return f'grep -A5 -i "^{provider}:" {self.path}'
        if self.configmap:
            name, _, key = self.configmap.partition("/")
            key = (key or DEFAULT_KEY).replace(".", "\\.")
            return (
                f"kubectl get configmap {name} -o jsonpath='{{.data.{key}}}'"
                f' | grep -A5 -i "^{provider}:"'
            )
        return "# no rights registry configured (rights_registry_path / rights_registry_configmap)"

    async def execute(self, clients: Clients) -> StepOutcome:
        provider = self.provider
        found = await _text(clients, self.path, self.configmap)
        if found is None:
            return Skip(
                "no rights registry configured: set the rule's rights_registry_path or"
                " rights_registry_configmap to show its entry here"
            )
        where, text = found
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0][:160]
            raise StepFailed(f"{where} is not valid YAML: {first}") from exc
        hit = entry(doc, provider)
        if hit is None:
            return Done(
                f"{where} has no {provider} entry: its data has no export rule (add one with"
                " export: restricted, require_license: true)",
                data={"source": where, "entry": None},
            )
        key, values = hit
        shown = {f: values[f] for f in _FIELDS if f in values}
        text_entry = ", ".join(f"{f}: {v!r}" for f, v in shown.items()) or "(empty)"
        allowed = str(values.get("export", "")).lower() == "allow"
        verdict = (
            "export is ALLOWED: change it to restricted in the registry (by hand, in the"
            " app's repository)"
            if allowed
            else "as expected"
        )
        return Done(
            f"{where} {key}: {text_entry}: {verdict}",
            data={
                "source": where,
                "entry": {k: str(v) for k, v in shown.items()},
                "allow": allowed,
            },
        )
