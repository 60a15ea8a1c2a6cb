"""KubernetesClient against FakeKubeAPI over real HTTP: effects, exact requests,
error mapping and input validation (bad names never reach the server)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import kubernetes.client as k8s
import pytest

from remediator.clients.kubernetes import KubernetesClient, LogLine
from remediator.errors import (
    ConfigError,
    InputRejected,
    TargetConflict,
    TargetNotFound,
    TargetRejected,
    TargetThrottled,
    TargetTimeout,
    TargetUnavailable,
)
from tests.fixtures.kube_api import FakeKubeAPI

NS = "prod"
DEPLOY = "/apis/apps/v1/namespaces/prod/deployments/scheduler"


def _api_client(url: str) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = False  # as from_config does: one attempt per call
    return k8s.ApiClient(cfg)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        yield server


@pytest.fixture
async def kube(fake: FakeKubeAPI) -> AsyncIterator[KubernetesClient]:
    client = KubernetesClient(_api_client(fake.url), NS, request_timeout=0.5)
    yield client
    await client.aclose()


# ---------------------------------------------------------------- pod logs


async def test_pod_logs_reads_tail_of_each_matching_pod_and_filters(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_pod(NS, "scheduler-b", {"app": "scheduler"}, "old build_pack\nb1\nbuild_pack: err\n")
    fake.add_pod(NS, "scheduler-a", {"app": "scheduler"}, "a1\nbuild_pack boom\n")
    fake.add_pod(NS, "web-1", {"app": "web"}, "build_pack elsewhere\n")

    lines = await kube.pod_logs("app=scheduler", tail_lines=2, grep="build_pack")

    assert lines == [
        LogLine("scheduler-a", "build_pack boom"),
        LogLine("scheduler-b", "build_pack: err"),
    ]
    assert [(r.method, r.path, r.query) for r in fake.requests] == [
        ("GET", "/api/v1/namespaces/prod/pods", {"labelSelector": "app=scheduler"}),
        (
            "GET",
            "/api/v1/namespaces/prod/pods/scheduler-a/log",
            {"tailLines": "2", "limitBytes": "1048576"},
        ),
        (
            "GET",
            "/api/v1/namespaces/prod/pods/scheduler-b/log",
            {"tailLines": "2", "limitBytes": "1048576"},
        ),
    ]


async def test_pod_logs_keeps_a_json_log_line_verbatim(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_pod(NS, "scheduler-a", {"app": "scheduler"}, '{"event": "build_pack", "ok": false}\n')
    lines = await kube.pod_logs("app=scheduler")
    assert lines == [LogLine("scheduler-a", '{"event": "build_pack", "ok": false}')]


async def test_pod_logs_skips_pending_pods(fake: FakeKubeAPI, kube: KubernetesClient) -> None:
    fake.add_pod(NS, "scheduler-a", {"app": "scheduler"}, "x\n", phase="Pending")
    assert await kube.pod_logs("app=scheduler") == []
    assert [r.path for r in fake.requests] == ["/api/v1/namespaces/prod/pods"]


# -------------------------------------------------------------------- jobs


async def test_create_job_posts_a_never_restarting_job(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    name = await kube.create_job(
        "build-pack-1",
        "registry.local/dawsos:1.2",
        ["python", "-m", "jobs.build_pack", "--date", "2024-05-01", "--force"],
        labels={"app.kubernetes.io/managed-by": "remediator", "runbook": "rb-01"},
        ttl_seconds_after_finished=600,
    )

    assert name == "build-pack-1"
    [req] = fake.requests
    assert (req.method, req.path) == ("POST", "/apis/batch/v1/namespaces/prod/jobs")
    spec = req.body["spec"]
    assert req.body["metadata"]["labels"]["runbook"] == "rb-01"
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["containers"][0]["command"][2] == "jobs.build_pack"
    stored = fake.get("jobs", NS, "build-pack-1")
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/dawsos:1.2"
    )


async def test_job_status_follows_the_controller(fake: FakeKubeAPI, kube: KubernetesClient) -> None:
    await kube.create_job("ok-job", "img:1", ["true"], labels={})
    await kube.create_job("bad-job", "img:1", ["false"], labels={})
    assert await kube.job_status("ok-job") == "running"

    fake.set_job_status(NS, "ok-job", succeeded=1)
    fake.set_job_status(NS, "bad-job", failed=1)

    assert await kube.job_status("ok-job") == "succeeded"
    assert await kube.job_status("bad-job") == "failed"
    assert fake.requests[-1].path == "/apis/batch/v1/namespaces/prod/jobs/bad-job/status"


async def test_create_job_twice_with_same_spec_is_idempotent(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    await kube.create_job("replay-dlq", "img:1", ["python", "-m", "x"], labels={"a": "b"})
    assert await kube.create_job("replay-dlq", "img:1", ["python", "-m", "x"], labels={"a": "b"})
    assert [r.method for r in fake.requests] == ["POST", "POST", "GET"]


async def test_create_job_over_a_different_job_is_rejected(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    await kube.create_job("replay-dlq", "img:1", ["python", "-m", "x"], labels={})
    with pytest.raises(TargetRejected, match="another Job"):
        await kube.create_job("replay-dlq", "img:1", ["rm", "-rf", "/"], labels={})


async def test_job_status_of_missing_job_is_rejected(kube: KubernetesClient) -> None:
    with pytest.raises(TargetNotFound, match="404"):
        await kube.job_status("nope")


# ------------------------------------------------------------- deployments


async def test_scale_patches_replicas_and_returns_previous(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_deployment(NS, "scheduler", replicas=3)
    rv = fake.get("deployments", NS, "scheduler")["metadata"]["resourceVersion"]  # type: ignore[index]

    assert await kube.scale("scheduler", 0) == 3

    assert fake.get("deployments", NS, "scheduler")["spec"]["replicas"] == 0  # type: ignore[index]
    assert await kube.get_replicas("scheduler") == 0
    patch = fake.requests[1]
    assert (patch.method, patch.path) == ("PATCH", DEPLOY + "/scale")
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body == {"metadata": {"resourceVersion": rv}, "spec": {"replicas": 0}}


async def test_scale_loses_the_race_as_conflict(fake: FakeKubeAPI, kube: KubernetesClient) -> None:
    """A resourceVersion that changed between read and patch is a 409, not a lost update."""
    fake.add_deployment(NS, "scheduler", replicas=3)
    real_rv = fake.get("deployments", NS, "scheduler")["metadata"]["resourceVersion"]  # type: ignore[index]
    # Serve a stale scale object for the read, as if someone scaled right after it.
    stale = {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "scheduler", "namespace": NS, "resourceVersion": "1"},
        "spec": {"replicas": 5},
        "status": {"replicas": 5},
    }
    fake.fail_next("GET", r"/scale$", status=200, body=stale)
    with pytest.raises(TargetConflict, match="409"):
        await kube.scale("scheduler", 0)
    dep = fake.get("deployments", NS, "scheduler")
    assert dep is not None
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["resourceVersion"] == real_rv


async def test_rollout_restart_sets_restarted_at_annotation(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_deployment(NS, "scheduler", replicas=2)
    stamp = await kube.rollout_restart("scheduler")

    dep = fake.get("deployments", NS, "scheduler")
    assert dep is not None
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"kubectl.kubernetes.io/restartedAt": stamp}
    assert dep["metadata"]["generation"] == 2
    [req] = fake.requests
    assert (req.method, req.path) == ("PATCH", DEPLOY)


# ----------------------------------------------------------------- secrets


async def test_patch_secret_sets_base64_values_and_keeps_other_keys(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_secret(NS, "provider-keys", {"fmp": "old", "polygon": "keep"})
    await kube.patch_secret("provider-keys", {"fmp": "s3cr3t-value"})

    assert fake.secret_data(NS, "provider-keys") == {"fmp": "s3cr3t-value", "polygon": "keep"}
    [req] = fake.requests
    assert (req.method, req.path) == ("PATCH", "/api/v1/namespaces/prod/secrets/provider-keys")
    assert req.body == {"data": {"fmp": "czNjcjN0LXZhbHVl"}}


async def test_patch_secret_error_never_carries_the_value(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_secret(NS, "provider-keys", {})
    echo = {"kind": "Status", "code": 422, "message": "bad value czNjcjN0LXZhbHVl"}
    fake.fail_next("PATCH", "/secrets/", status=422, body=echo)
    with pytest.raises(TargetRejected) as info:
        await kube.patch_secret("provider-keys", {"fmp": "s3cr3t-value"})
    assert "czNjcjN0" not in str(info.value)
    assert "czNjcjN0" not in str(info.value.__cause__)


# ----------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TargetUnavailable),
        (503, TargetUnavailable),
        (409, TargetConflict),
        (404, TargetNotFound),
        (403, TargetRejected),
    ],
)
async def test_http_errors_map_to_the_error_tree(
    fake: FakeKubeAPI, kube: KubernetesClient, status: int, error: type[Exception]
) -> None:
    fake.add_deployment(NS, "scheduler", replicas=1)
    fake.fail_next("GET", "/deployments/scheduler/scale", status=status)
    with pytest.raises(error, match=str(status)):
        await kube.get_replicas("scheduler")
    assert len(fake.requests) == 1  # no retry inside the client


async def test_throttling_carries_retry_after(fake: FakeKubeAPI, kube: KubernetesClient) -> None:
    fake.add_deployment(NS, "scheduler", replicas=1)
    fake.fail_next("PATCH", "/deployments/scheduler$", status=429, headers={"Retry-After": "7"})
    with pytest.raises(TargetThrottled) as info:
        await kube.rollout_restart("scheduler")
    assert info.value.retry_after == 7.0


async def test_hang_beyond_request_timeout_is_a_timeout(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_deployment(NS, "scheduler", replicas=1)
    fake.hang_next("GET", "/scale$", seconds=30)
    with pytest.raises(TargetTimeout):
        await kube.get_replicas("scheduler")
    # The client still works afterwards (the dead connection was not reused).
    assert await kube.get_replicas("scheduler") == 1


async def test_connection_refused_is_unavailable(unused_port: int) -> None:
    client = KubernetesClient(_api_client(f"http://127.0.0.1:{unused_port}"), NS, 0.5)
    try:
        with pytest.raises(TargetUnavailable, match="cannot connect"):
            await client.get_replicas("scheduler")
    finally:
        await client.aclose()


async def test_aclose_closes_pooled_connections(fake: FakeKubeAPI) -> None:
    client = KubernetesClient(_api_client(fake.url), NS, 1.0)
    fake.add_deployment(NS, "scheduler", replicas=1)
    await client.get_replicas("scheduler")
    assert fake.open_connections == 1  # kept alive in urllib3's pool

    await client.aclose()

    for _ in range(200):  # wait for the server to notice the close
        if fake.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert fake.open_connections == 0


async def test_calls_after_aclose_are_refused(fake: FakeKubeAPI, kube: KubernetesClient) -> None:
    await kube.aclose()
    with pytest.raises(TargetUnavailable, match="closed"):
        await kube.get_replicas("scheduler")
    assert fake.requests == []


# -------------------------------------------------------------- validation

BAD_NAMES = ["../x", "A_B", "a" * 64, "x" * 10_000, "", "sched\n", "a/b", "-a", "a.b"]


@pytest.mark.parametrize("bad", BAD_NAMES)
async def test_bad_names_are_rejected_before_any_request(
    fake: FakeKubeAPI, kube: KubernetesClient, bad: str
) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: kube.get_replicas(bad),
        lambda: kube.scale(bad, 1),
        lambda: kube.rollout_restart(bad),
        lambda: kube.job_status(bad),
        lambda: kube.create_job(bad, "img:1", ["true"], labels={}),
    ]
    # Secret names are DNS subdomains: dots and 64..253 characters are legal there.
    if bad not in ("a" * 64, "a.b"):
        calls.append(lambda: kube.patch_secret(bad, {"k": "v"}))
    for call in calls:
        with pytest.raises(InputRejected):
            await call()
    assert fake.requests == []


@pytest.mark.parametrize(
    "selector",
    [
        "app=../x",
        "app=" + "a" * 64,
        "app=" + "x" * 10_000,
        "../x=1",
        "app=scheduler\n",
        "app=a b",
        "app=a,",
        "app=a&b",
        "app in (a,b)",
        "",
    ],
)
async def test_bad_label_selectors_are_rejected_before_any_request(
    fake: FakeKubeAPI, kube: KubernetesClient, selector: str
) -> None:
    with pytest.raises(InputRejected, match="label_selector"):
        await kube.pod_logs(selector)
    assert fake.requests == []


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.pod_logs("app=scheduler", tail_lines=0),
        lambda k: k.scale("scheduler", -1),
        lambda k: k.scale("scheduler", True),
        lambda k: k.create_job("j", "img:1; rm -rf /", ["true"], labels={}),
        lambda k: k.create_job("j", "img:1", [], labels={}),
        lambda k: k.create_job("j", "img:1", ["a\x00b"], labels={}),
        lambda k: k.create_job("j", "img:1", ["true"], labels={"bad key": "v"}),
        lambda k: k.create_job("j", "img:1", ["true"], labels={"k": "v" * 64}),
        lambda k: k.patch_secret("s", {"bad/key": "v"}),
        lambda k: k.patch_secret("s", {}),
    ],
)
async def test_bad_arguments_are_rejected_before_any_request(
    fake: FakeKubeAPI, kube: KubernetesClient, call: object
) -> None:
    with pytest.raises(InputRejected):
        await call(kube)  # type: ignore[operator]
    assert fake.requests == []


@pytest.mark.parametrize("bad", ["../etc", "x" * 10_000, "Prod"])
async def test_bad_namespace_is_rejected(fake: FakeKubeAPI, bad: str) -> None:
    api = _api_client(fake.url)
    try:
        with pytest.raises(InputRejected, match="namespace"):
            KubernetesClient(api, bad, 1.0)
    finally:
        api.rest_client.pool_manager.clear()


# ------------------------------------------------------- config and sync mode


async def test_from_config_kubeconfig_reaches_the_server(tmp_path: Path) -> None:
    async with FakeKubeAPI() as fake:
        fake.add_deployment(NS, "scheduler", replicas=4)
        path = fake.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubernetesClient.from_config("kubeconfig", NS, str(path), request_timeout=1.0)
        try:
            assert await client.get_replicas("scheduler") == 4
        finally:
            await client.aclose()


def test_from_config_errors_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="in-cluster"):
        KubernetesClient.from_config("in-cluster", NS)
    with pytest.raises(ConfigError, match="missing"):
        KubernetesClient.from_config("kubeconfig", NS, str(tmp_path / "missing"))


def test_fake_runs_in_a_thread_for_sync_code() -> None:
    with FakeKubeAPI() as fake:
        fake.add_deployment(NS, "scheduler", replicas=2)
        with urllib.request.urlopen(f"{fake.url}{DEPLOY}/scale", timeout=5) as resp:
            body = json.load(resp)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{fake.url}/api/v1/namespaces/prod/secrets/nope", timeout=5)
        with info.value as missing:
            status = json.load(missing)
    assert body["kind"] == "Scale"
    assert body["spec"]["replicas"] == 2
    assert info.value.code == 404
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "NotFound", 404)


# ------------------------------------------------- Jobs from a pod template


async def test_job_from_deployment_keeps_the_default_container_and_drops_the_rest(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    fake.add_deployment(
        NS,
        "worker",
        replicas=2,
        annotations={"kubectl.kubernetes.io/default-container": "main", "team": "data"},
        pod_spec={
            "serviceAccountName": "worker",
            "initContainers": [{"name": "migrate-wait", "image": "busybox:1"}],
            "containers": [
                {"name": "proxy", "image": "cloudsql-proxy:2"},
                {
                    "name": "main",
                    "image": "dawsos/worker:7",
                    "args": ["--serve"],
                    "env": [{"name": "A", "value": "1"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                },
            ],
        },
    )
    labels = {"remediator/run": "r1"}
    name = await kube.create_job_from_deployment(
        "replay-1", "worker", ["python", "-m", "x"], labels=labels
    )
    job = fake.get("jobs", NS, name)
    assert job is not None
    pod = job["spec"]["template"]
    [main] = pod["spec"]["containers"]
    assert (main["name"], main["image"], main["command"]) == (
        "main",
        "dawsos/worker:7",
        ["python", "-m", "x"],
    )
    assert "args" not in main and "readinessProbe" not in main
    assert main["env"] == [{"name": "A", "value": "1"}]
    assert pod["spec"]["initContainers"] == [{"name": "migrate-wait", "image": "busybox:1"}]
    assert pod["spec"]["serviceAccountName"] == "worker"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["annotations"]["team"] == "data"
    assert pod["metadata"]["labels"] == labels
    # Created again (a retry after a timeout): the same Job, no error.
    assert (
        await kube.create_job_from_deployment(
            "replay-1", "worker", ["python", "-m", "x"], labels=labels
        )
        == name
    )
    # A named container and an image override.
    other = await kube.create_job_from_deployment(
        "replay-2", "worker", ["true"], labels=labels, container="proxy", image="dawsos/proxy:9"
    )
    [proxy] = fake.get("jobs", NS, other)["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    assert (proxy["name"], proxy["image"]) == ("proxy", "dawsos/proxy:9")


async def test_job_from_a_missing_deployment_or_container_is_refused(
    fake: FakeKubeAPI, kube: KubernetesClient
) -> None:
    with pytest.raises(TargetNotFound, match="read deployment nope: HTTP 404"):
        await kube.create_job_from_deployment("j-1", "nope", ["true"], labels={})
    fake.add_deployment(NS, "worker", replicas=1)
    with pytest.raises(InputRejected, match="no container 'ghost'"):
        await kube.create_job_from_deployment(
            "j-2", "worker", ["true"], labels={}, container="ghost"
        )
    with pytest.raises(InputRejected):
        await kube.create_job_from_deployment("j-3", "Bad_Name", ["true"], labels={})
    assert fake.get("jobs", NS, "j-1") is None and fake.get("jobs", NS, "j-2") is None
