"""``doctor`` against the Kubernetes fake (SelfSubjectAccessReview) and moto (STS and
the read-only calls the runbooks make, with the rules' params)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from doctor_support import check, doctor, step, write_config

from tests.fixtures.kube_api import FakeKubeAPI
from tests.fixtures.moto_server import start_moto_server

REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIADUMMYDOCTOR00001",
    "AWS_SECRET_ACCESS_KEY": "dummy-doctor-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
RB01 = (
    "rules:\n  - {name: pack, matchers: ['alertname=\"PricingPackBuildSlow\"'], runbook: RB-01}\n"
)


async def test_a_denied_verb_makes_its_step_not_runnable_and_fails(tmp_path: Path) -> None:
    async with FakeKubeAPI() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", namespace="prod")
        kube = {"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "namespace": "prod"}
        config = write_config(tmp_path, {"targets": {"kubernetes": kube}}, RB01)
        allowed = await doctor(config, "--json")
        fake.deny("create", "jobs", group="batch")
        denied = await doctor(config, "--json")
        human = await doctor(config)
        reviews = [
            r.body["spec"]["resourceAttributes"]
            for r in fake.requests
            if r.path.endswith("/selfsubjectaccessreviews")
        ]
    assert allowed.code == 0, allowed.stdout
    ok = allowed.json()
    assert check(ok, "targets", "kubernetes")["ok"] is True
    assert step(ok, "RB-01", "scheduler_logs")["runnable"] is True
    assert {(r["verb"], r["resource"], r.get("subresource")) for r in reviews} >= {
        ("list", "pods", None),
        ("get", "pods", "log"),
        ("create", "jobs", None),
    }
    assert all(r["namespace"] == "prod" for r in reviews)

    assert denied.code == 1
    report = denied.json()
    kube_check = check(report, "targets", "kubernetes")
    assert kube_check["ok"] is False and "create jobs.batch" in kube_check["detail"]
    rerun = step(report, "RB-01", "rerun_build")
    assert rerun["runnable"] is False
    assert "create jobs.batch" in rerun["missing"]
    assert "not allowed to create jobs.batch" in rerun["reason"]
    assert step(report, "RB-01", "scheduler_logs")["runnable"] is True
    assert human.code == 1
    rerun_line = next(ln for ln in human.stdout.splitlines() if " rerun_build " in ln)
    assert rerun_line.lstrip().startswith("NO") and "create jobs.batch" in rerun_line


async def test_an_unreachable_api_server_fails_the_kubernetes_check(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    async with FakeKubeAPI() as fake:
        fake.write_kubeconfig(kubeconfig, namespace="prod")
    # The fake has stopped: its port no longer answers, as a dead API server.
    kube = {"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "namespace": "prod"}
    config = write_config(tmp_path, {"targets": {"kubernetes": kube}}, RB01)
    outcome = await doctor(config, "--json")
    assert outcome.code == 1
    report = outcome.json()
    assert check(report, "targets", "kubernetes")["ok"] is False
    assert step(report, "RB-01", "scheduler_logs")["missing"] == ["targets.kubernetes"]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        server = start_moto_server()
        yield server.endpoint_url
        server.stop()


def _aws_world(moto_url: str, instance: str | None) -> str:
    session = boto3.session.Session(
        region_name=REGION,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    rds = session.client("rds", endpoint_url=moto_url)
    waf = session.client("wafv2", endpoint_url=moto_url)
    if instance:
        rds.create_db_instance(
            DBInstanceIdentifier=instance,
            DBInstanceClass="db.r6g.large",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin_user",
            MasterUserPassword="password-123",
        )
    name = f"blocked-{uuid.uuid4().hex[:8]}"
    created = waf.create_ip_set(Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[])
    rds.close()
    waf.close()
    return f"{name}|{created['Summary']['Id']}"


def _rules(instance: str, ip_set: str) -> str:
    name, set_id = ip_set.split("|")
    return (
        "rules:\n"
        "  - name: db\n    matchers: ['alertname=\"DatabaseDown\"']\n    runbook: RB-05\n"
        f"    params: {{db_instance_identifier: {instance}}}\n"
        "  - name: sec\n    matchers: ['alertname=\"SuspiciousRequestRate\"']\n    runbook: RB-06\n"
        f"    params: {{waf_ip_set_name: {name}, waf_ip_set_id: {set_id}}}\n"
    )


async def test_aws_identity_and_the_runbooks_reads_pass_on_moto(
    tmp_path: Path, moto_url: str
) -> None:
    instance = f"dawsos-{uuid.uuid4().hex[:8]}"
    ip_set = _aws_world(moto_url, instance)
    aws = {"region": REGION, "endpoint_url": moto_url}
    config = write_config(tmp_path, {"targets": {"aws": aws}}, _rules(instance, ip_set))
    outcome = await doctor(config, "--json", env=AWS_ENV)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    report = outcome.json()
    aws_check = check(report, "targets", "aws")
    assert aws_check["ok"] is True and "arn:aws" in aws_check["detail"]
    assert step(report, "RB-05", "rds_status")["runnable"] is True
    block = step(report, "RB-06", "block_source_ip")
    assert block["runnable"] is True
    assert "wafv2:UpdateIPSet not checked" in block["reason"]


async def test_a_db_instance_that_does_not_exist_fails_naming_the_call(
    tmp_path: Path, moto_url: str
) -> None:
    ip_set = _aws_world(moto_url, None)
    aws = {"region": REGION, "endpoint_url": moto_url}
    rules = _rules("no-such-instance", ip_set)
    config = write_config(tmp_path, {"targets": {"aws": aws}}, rules)
    outcome = await doctor(config, "--json", env=AWS_ENV)
    assert outcome.code == 1
    report = outcome.json()
    assert "DBInstanceNotFound" in check(report, "targets", "aws")["detail"]
    rds = step(report, "RB-05", "rds_status")
    assert rds["runnable"] is False and rds["missing"] == ["rds:DescribeDBInstances"]
    assert step(report, "RB-06", "block_source_ip")["runnable"] is True
