"""Whatever a YAML runbook file holds, loading it ends in runbooks or file:line errors,
never an exception (serve, check-rules and a reload all go through this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remediator.runbook_api.registry import Registry
from remediator.runbooks import yaml_runbooks

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "{labels.queue}",
            "{labels.nope}",
            "{labels.",
            "}",
            "P2",
            "mitigate",
            "diagnose",
            "approve",
            "k8s_name",
            "SELECT 1 WHERE $1 = $1",
            "rows",
            "WORKER-X",
            "",
        ]
    ),
    st.text(max_size=20),
)
KEYS = st.sampled_from(
    [
        "id", "title", "severity", "labels", "target", "steps", "on_resolve", "name", "kind",
        "approval", "temporary", "undo", "corroborates", "sql", "kube_scale", "kube_restart",
        "kube_job", "redis_read", "provider_probe", "page", "query", "binds", "mutates",
        "expect", "deployment", "replicas", "argv", "keys", "text", "queue", "timeout",
    ]
)  # fmt: skip
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runbooks=st.lists(VALUES, max_size=3))
def test_any_document_loads_or_fails_with_located_errors(
    tmp_path_factory: Any, runbooks: Any
) -> None:
    path: Path = tmp_path_factory.mktemp("fuzz") / "runbooks.yaml"
    path.write_text(yaml.safe_dump({"runbooks": runbooks}))
    registry = Registry()
    errors = yaml_runbooks.load(path, registry)
    for error in errors:
        assert error.startswith(str(path) + ":"), error
    assert len(registry.ids()) + len(errors) >= len(runbooks) or not runbooks
