"""The Kubernetes manifests: schema-valid, least-privilege, hardened, and consistent.

Core objects are validated by kubernetes-validate (strict: unknown fields fail) against
the schema of a current Kubernetes release, shipped inside the package, so this runs
offline. The Prometheus Operator CRDs have no schema there; their structure is checked
here in Python.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from deploy_support import (
    KUBERNETES_DIR,
    PROMETHEUS_DIR,
    alert_rules,
    load_yaml,
    load_yaml_docs,
    run,
)

from remediator import settings
from remediator.engine.matchers import matches_all, parse_matchers

# The oldest release still commonly run and the newest the package ships schemas for.
K8S_VERSIONS = ("1.33.0", "1.37.0")
CORE_KINDS = {
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}
POD_LABELS = {"app.kubernetes.io/name": "remediator"}
# Exactly what the shipped runbooks call (DESIGN.md RB-01 .. RB-06); nothing more.
EXPECTED_RBAC = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": ["scheduler", "api", "worker"],
        "verbs": ["get", "patch"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale"],
        "resourceNames": ["scheduler", "api", "worker"],
        "verbs": ["get", "patch"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["jwt-secret"],
        "verbs": ["get", "patch"],
    },
]


def _docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(KUBERNETES_DIR.glob("*.yaml")) for d in load_yaml_docs(p)]


DOCS = _docs()
APPLIED = [(name, d) for name, d in DOCS if name not in NOT_APPLIED]


def _one(kind: str, docs: list[tuple[str, dict[str, Any]]] = APPLIED) -> dict[str, Any]:
    [doc] = [d for _, d in docs if d["kind"] == kind]
    return doc


def _by_name(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


DEPLOYMENT = _one("Deployment")
POD = DEPLOYMENT["spec"]["template"]["spec"]
[CONTAINER] = POD["containers"]
ENV = {e["name"]: e for e in CONTAINER["env"]}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "doc",
    [pytest.param(d, id=f"{name}:{d['kind']}") for name, d in DOCS if d["kind"] in CORE_KINDS],
)
def test_core_object_is_valid_against_the_kubernetes_schema(
    doc: dict[str, Any], version: str
) -> None:
    assert kubernetes_validate.validate(doc, version, strict=True) == version.rsplit(".", 1)[0]


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """The validator is strict, so the test above would catch a typo in a manifest."""
    broken = copy.deepcopy(DEPLOYMENT)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_every_document_is_a_known_kind_and_namespace_agnostic() -> None:
    for name, doc in DOCS:
        if name == "kustomization.yaml":
            continue
        assert doc["kind"] in CORE_KINDS | CRD_KINDS, (name, doc["kind"])
        # The namespace comes from `kubectl apply -n` / kustomize, never from the file.
        assert "namespace" not in doc["metadata"], name
    assert not [d for _, d in DOCS if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = load_yaml(KUBERNETES_DIR / "kustomization.yaml")
    files = {p.name for p in KUBERNETES_DIR.glob("*.yaml")} - NOT_APPLIED
    assert sorted(kustomization["resources"]) == sorted(files)
    assert "namespace" not in kustomization


def test_kustomize_build_puts_everything_in_the_chosen_namespace(
    tool: Callable[[str], str], tmp_path: Path
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "dawsos-prod",
                # kustomize refuses absolute paths to a base.
                "resources": [os.path.relpath(KUBERNETES_DIR, overlay)],
            }
        ),
        encoding="utf-8",
    )
    result = run([tool("kubectl"), "kustomize", str(overlay)])
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(d["kind"] for d in built) == sorted(d["kind"] for _, d in APPLIED)
    assert {d["metadata"].get("namespace") for d in built} == {"dawsos-prod"}
    [deployment] = [d for d in built if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    [override] = load_yaml(KUBERNETES_DIR / "kustomization.yaml")["images"]
    assert image == f"{override['newName']}:{override['newTag']}"


# --- least privilege --------------------------------------------------------------------


def test_role_grants_exactly_what_the_runbooks_use() -> None:
    assert _one("Role")["rules"] == EXPECTED_RBAC


def test_role_has_no_wildcards_and_secrets_only_by_name() -> None:
    for rule in _one("Role")["rules"]:
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), rule
        assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(
            rule["verbs"]
        )
        if "secrets" in rule["resources"]:
            assert rule.get("resourceNames"), "secrets must be limited by name"
            assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]
        if set(rule["verbs"]) - {"create", "get", "list"}:
            # Anything that changes an existing object names the objects it may change.
            assert rule.get("resourceNames"), rule


def test_rolebinding_binds_the_deployment_service_account_to_the_role() -> None:
    binding = _one("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": _one("Role")["metadata"]["name"],
    }
    account = _one("ServiceAccount")["metadata"]["name"]
    assert POD["serviceAccountName"] == account
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]


# --- hardening --------------------------------------------------------------------------


def test_pod_runs_as_non_root_with_default_seccomp() -> None:
    ctx = POD["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001 and ctx["runAsGroup"] == 10001
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not POD.get("hostNetwork") and not POD.get("hostPID") and not POD.get("hostIPC")


def test_container_is_read_only_unprivileged_and_drops_all_capabilities() -> None:
    ctx = CONTAINER["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx.get("privileged", False) is False
    assert ctx["runAsNonRoot"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert not ctx["capabilities"].get("add")


def test_container_has_resource_requests_and_limits() -> None:
    resources = CONTAINER["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


# --- the Deployment ---------------------------------------------------------------------


def test_deployment_runs_two_replicas_with_probes_on_the_daemon_port() -> None:
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert _selects(POD_LABELS, DEPLOYMENT["spec"]["template"]["metadata"]["labels"])
    [port] = CONTAINER["ports"]
    assert port == {"name": "http", "containerPort": 9095, "protocol": "TCP"}
    assert CONTAINER["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert CONTAINER["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_secrets_reach_the_container_only_through_secret_refs() -> None:
    secret = _by_name("Secret", "remediator-secrets")
    for name, env in ENV.items():
        if "valueFrom" in env and "secretKeyRef" in env["valueFrom"]:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"], name
            assert ref["key"] in secret["stringData"], name
        else:
            # Literal values are paths and the namespace, never credentials.
            assert not re.search(r"TOKEN|KEY|DSN|URL|PASSWORD", name), name


def _mount_path(volume_for_configmap: str) -> str:
    [volume] = [
        v for v in POD["volumes"] if v.get("configMap", {}).get("name") == volume_for_configmap
    ]
    [mount] = [m for m in CONTAINER["volumeMounts"] if m["name"] == volume["name"]]
    assert mount.get("readOnly") is True
    return str(mount["mountPath"])


def test_config_and_rules_come_from_the_configmaps() -> None:
    config_dir = _mount_path("remediator-config")
    assert "config.yaml" in _by_name("ConfigMap", "remediator-config")["data"]
    assert ENV["REMEDIATOR_CONFIG"]["value"] == f"{config_dir}/config.yaml"
    rules_dir = _mount_path("remediator-rules")
    config = yaml.safe_load(_by_name("ConfigMap", "remediator-config")["data"]["config.yaml"])
    assert config["rules"].rstrip("/") == rules_dir


def _container_env_for_config() -> dict[str, str]:
    """The environment the daemon sees, with the example Secret's values filled in."""
    secret = _by_name("Secret", "remediator-secrets")["stringData"]
    env = {}
    for name, spec in ENV.items():
        if "value" in spec:
            env[name] = spec["value"]
        elif "secretKeyRef" in spec["valueFrom"]:
            env[name] = secret[spec["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[name] = "dawsos-prod"  # fieldRef metadata.namespace
    return env


def test_shipped_config_loads_in_dry_run_with_postgres_state() -> None:
    """The real settings loader accepts the ConfigMap's file given the Deployment's env."""
    text = _by_name("ConfigMap", "remediator-config")["data"]["config.yaml"]
    loaded = settings.from_mapping(
        yaml.safe_load(text), source="configmap.yaml", env=_container_env_for_config()
    )
    # Going live must be a conscious edit.
    assert loaded.mode == "dry-run"
    # Two replicas coordinate through Postgres; SQLite would run everything twice.
    assert loaded.state.get_secret_value().startswith("postgresql://")
    assert loaded.port == 9095
    assert loaded.auth.webhook_tokens and loaded.auth.named_operator_tokens()
    assert loaded.targets.kubernetes.mode == "in-cluster"
    assert loaded.targets.kubernetes.namespace == "dawsos-prod"


def test_shipped_config_needs_every_variable_the_deployment_provides() -> None:
    text = _by_name("ConfigMap", "remediator-config")["data"]["config.yaml"]
    env = _container_env_for_config()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used == set(env) - {"REMEDIATOR_CONFIG"}


def test_rules_configmap_sends_every_dawsos_alert_to_its_runbook() -> None:
    from test_alert_rules import DESIGN_ALERTS

    data = _by_name("ConfigMap", "remediator-rules")["data"]
    rules = [r for text in data.values() for r in yaml.safe_load(text)["rules"]]
    for rule in rules:
        # The DESIGN.md rule keys; no `mode`: the global dry-run decides.
        assert set(rule) <= {
            "name",
            "matchers",
            "runbook",
            "params",
            "cooldown",
            "max_runs_per_hour",
            "description",
        }, rule
    for alert in alert_rules(PROMETHEUS_DIR / "dawsos-alerts.yml"):
        labels = {"alertname": alert["alert"], **alert["labels"]}
        runbooks = [
            r["runbook"] for r in rules if matches_all(parse_matchers(r["matchers"]), labels)
        ]
        assert runbooks == [DESIGN_ALERTS[alert["alert"]][0]], alert["alert"]


# --- Service, PDB, NetworkPolicy ----------------------------------------------------------


def test_service_exposes_the_daemon_port_of_the_pods() -> None:
    service = _one("Service")
    assert _selects(service["spec"]["selector"], POD_LABELS)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9095, "targetPort": "http", "protocol": "TCP"}
    ]


def test_pdb_keeps_one_replica_through_drains() -> None:
    pdb = _one("PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], POD_LABELS)
    assert 1 <= pdb["spec"]["minAvailable"] < DEPLOYMENT["spec"]["replicas"]


def test_networkpolicy_admits_only_alertmanager_and_prometheus_on_9095() -> None:
    policy = _one("NetworkPolicy")["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], POD_LABELS)
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": 9095, "protocol": "TCP"}]
    # An empty or missing `from` would admit every pod.
    assert rule["from"]
    names = set()
    for peer in rule["from"]:
        assert set(peer) == {"namespaceSelector", "podSelector"}, peer
        assert "ipBlock" not in peer
        names.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
    assert names == {"alertmanager", "prometheus"}


# --- Prometheus Operator CRDs --------------------------------------------------------------


def test_servicemonitor_scrapes_the_service_metrics_port() -> None:
    monitor = _one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = _one("Service")
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The scrape job is named after the Service; remediator-alerts.yml matches job="remediator".
    assert service["metadata"]["name"] == "remediator"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}


def test_prometheusrule_wraps_exactly_the_remediator_alert_rules() -> None:
    rule = _one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == load_yaml(PROMETHEUS_DIR / "remediator-alerts.yml")["groups"]


def test_prometheusrule_groups_have_the_operator_shape() -> None:
    for group in _one("PrometheusRule")["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert ("alert" in rule) != ("record" in rule)
            assert all(isinstance(v, str) for v in rule.get("labels", {}).values())
            assert all(isinstance(v, str) for v in rule.get("annotations", {}).values())
