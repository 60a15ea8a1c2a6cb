"""An in-memory fake of the Kubernetes API server, for tests (ours and users').

It serves, over real HTTP on 127.0.0.1, just the endpoints that
``remediator.clients.kubernetes`` uses, with the response shapes of a real API
server: ``kind``/``apiVersion``, ``metadata.resourceVersion`` bumped on every change,
``Status`` objects for errors (404 NotFound, 409 AlreadyExists / Conflict on a stale
``resourceVersion``). Tests seed objects with ``add_*`` helpers, inject faults with
``fail_next`` / ``hang_next`` and assert on ``requests``.

Two ways to run it::

    async with FakeKubeAPI() as fake:   # on the running event loop
        ...
    with FakeKubeAPI() as fake:         # in a background thread, for sync code
        ...

It must never listen on anything but loopback, and never grow features the client
does not use: a fake that is more lenient than the real server hides bugs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import re
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

__all__ = ["FakeKubeAPI", "RecordedRequest"]

JsonDict = dict[str, Any]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_BODY: web.RequestKey[Any] = web.RequestKey("body")
# resource -> (group for Status.details, kind, apiVersion)
_KINDS = {
    "pods": ("", "Pod", "v1"),
    "secrets": ("", "Secret", "v1"),
    "configmaps": ("", "ConfigMap", "v1"),
    "jobs": ("batch", "Job", "batch/v1"),
    "deployments": ("apps", "Deployment", "apps/v1"),
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it (faulted and hung ones included)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, or text, or None
    content_type: str


@dataclass(slots=True)
class _Fault:
    method: str
    path: re.Pattern[str]
    count: int
    status: int = 500
    body: JsonDict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    apply: bool = False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386; for the map-only fields we serve, strategic merge behaves the same."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class _StatusError(Exception):
    def __init__(self, code: int, message: str, details: JsonDict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def _status_body(code: int, message: str, details: JsonDict | None = None) -> JsonDict:
    body: JsonDict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class FakeKubeAPI:
    """A fake API server holding Pods, Jobs, Deployments (and their scale) and Secrets."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._objects: dict[tuple[str, str, str], JsonDict] = {}
        self._logs: dict[tuple[str, str], str] = {}
        self._faults: list[_Fault] = []
        self._rv = itertools.count(1000)
        # Handlers (server loop) and helpers (test thread) share state in thread mode.
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeKubeAPI is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open (keep-alive included)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    # ---------------------------------------------------------------- lifecycle

    async def astart(self) -> str:
        """Serve on the running loop; returns the base URL."""
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware])
        self._routes(app)
        # Short shutdown: hung handlers are released by _stopping, nothing else lingers.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.url

    async def astop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.port = 0

    async def __aenter__(self) -> FakeKubeAPI:
        await self.astart()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def start(self) -> str:
        """Serve from a background thread with its own loop; returns the base URL."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # surfaced in the calling thread below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-kube-api", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            loop.close()
            raise failure[0]
        return self.url

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.astop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeKubeAPI:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig (no auth) pointing at this fake, for kubeconfig-mode tests."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # ------------------------------------------------------------ test helpers

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        count: int = 1,
        body: JsonDict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (a Status body
        unless ``body`` is given). ``path_regex`` is searched in the path, not the query;
        ``method`` may be ``"*"``."""
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), count, status, body, headers or {})
        )

    def hang_next(
        self, method: str, path_regex: str, seconds: float, *, count: int = 1, apply: bool = False
    ) -> None:
        """Hold the next matching requests for ``seconds`` (or until the fake stops).
        Then answer 504 with no effect, or process them normally if ``apply`` (a change
        that landed although the client gave up)."""
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), count, hang=seconds, apply=apply)
        )

    def add_deployment(
        self,
        ns: str,
        name: str,
        replicas: int,
        image: str = "app:1",
        *,
        pod_spec: JsonDict | None = None,
        annotations: dict[str, str] | None = None,
    ) -> JsonDict:
        """A Deployment; ``pod_spec`` replaces its pod template's spec (env, volumes...)."""
        labels = {"app": name}
        template: JsonDict = {"metadata": {"labels": labels}}
        if annotations:
            template["metadata"]["annotations"] = dict(annotations)
        template["spec"] = copy.deepcopy(pod_spec) or {
            "containers": [{"name": name, "image": image}]
        }
        obj: JsonDict = {
            "metadata": {"labels": labels, "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": template,
            },
        }
        return self._store("deployments", ns, name, obj)

    def add_pod(
        self,
        ns: str,
        name: str,
        labels: dict[str, str],
        log_text: str = "",
        phase: str = "Running",
    ) -> JsonDict:
        obj: JsonDict = {
            "metadata": {"labels": dict(labels)},
            "spec": {"containers": [{"name": "main", "image": "app:1"}]},
            "status": {"phase": phase},
        }
        with self._lock:
            self._logs[(ns, name)] = log_text
        return self._store("pods", ns, name, obj)

    def add_config_map(self, ns: str, name: str, data: dict[str, str]) -> JsonDict:
        return self._store("configmaps", ns, name, {"data": dict(data)})

    def add_secret(self, ns: str, name: str, data: dict[str, str]) -> JsonDict:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self._store("secrets", ns, name, {"type": "Opaque", "data": encoded})

    def set_job_status(
        self, ns: str, name: str, *, succeeded: int = 0, failed: int = 0, active: int = 0
    ) -> JsonDict:
        """Play the Job controller: counts plus the Complete/Failed condition."""
        with self._lock:
            job = self._objects[("jobs", ns, name)]
            status: JsonDict = {"startTime": job["status"].get("startTime", _now())}
            if active:
                status["active"] = active
            if succeeded:
                status["succeeded"] = succeeded
            if failed:
                status["failed"] = failed
            if succeeded or failed:
                kind, reason = (
                    ("Complete", None) if succeeded else ("Failed", "BackoffLimitExceeded")
                )
                cond: JsonDict = {"type": kind, "status": "True", "lastTransitionTime": _now()}
                if reason:
                    cond["reason"] = reason
                status["conditions"] = [cond]
                if succeeded:
                    status["completionTime"] = _now()
            job["status"] = status
            self._bump(job)
            return copy.deepcopy(job)

    def get(self, resource: str, ns: str, name: str) -> JsonDict | None:
        """A copy of a stored object (``resource`` is "pods", "jobs", ...), or None."""
        with self._lock:
            obj = self._objects.get((resource, ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def secret_data(self, ns: str, name: str) -> dict[str, str]:
        obj = self.get("secrets", ns, name)
        if obj is None:
            raise KeyError(f"secret {ns}/{name}")
        return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}

    # ---------------------------------------------------------------- storage

    def _bump(self, obj: JsonDict) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def _store(self, resource: str, ns: str, name: str, obj: JsonDict) -> JsonDict:
        with self._lock:
            return copy.deepcopy(self._insert(resource, ns, name, obj))

    def _insert(self, resource: str, ns: str, name: str, obj: JsonDict) -> JsonDict:
        _group, kind, api_version = _KINDS[resource]
        obj = copy.deepcopy(obj)
        obj["kind"], obj["apiVersion"] = kind, api_version
        meta = obj.setdefault("metadata", {})
        meta.update(name=name, namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        self._bump(obj)
        self._objects[(resource, ns, name)] = obj
        return obj

    def _lookup(self, resource: str, ns: str, name: str) -> JsonDict:
        obj = self._objects.get((resource, ns, name))
        if obj is None:
            group, _kind, _v = _KINDS[resource]
            qualified = f"{resource}.{group}" if group else resource
            raise _StatusError(
                404,
                f'{qualified} "{name}" not found',
                {"name": name, "group": group, "kind": resource},
            )
        return obj

    # ------------------------------------------------------------- middleware

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        raw = await request.read()
        ctype = request.content_type
        body: Any = None
        if raw:
            text = raw.decode("utf-8", errors="replace")
            try:
                body = json.loads(text) if "json" in ctype else text
            except ValueError:
                body = text
        request[_BODY] = body
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), body, ctype)
        )
        fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.hang:
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.hang)
            if not fault.apply:
                return self._error(504, "the request was held by hang_next")
        elif fault is not None:
            message = f"injected failure ({fault.status})"
            payload = fault.body or _status_body(fault.status, message)
            return web.json_response(payload, status=fault.status, headers=fault.headers)
        try:
            return await handler(request)
        except _StatusError as exc:
            return self._error(exc.code, str(exc), exc.details)
        except web.HTTPNotFound:
            return self._error(404, "the server could not find the requested resource")
        except web.HTTPMethodNotAllowed:
            return self._error(405, f"the server does not allow this method: {request.method}")

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method) and fault.path.search(path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _error(code: int, message: str, details: JsonDict | None = None) -> web.Response:
        return web.json_response(_status_body(code, message, details), status=code)

    # ---------------------------------------------------------------- routes

    def _routes(self, app: web.Application) -> None:
        core, apps, batch = (
            "/api/v1/namespaces/{ns}",
            "/apis/apps/v1/namespaces/{ns}",
            ("/apis/batch/v1/namespaces/{ns}"),
        )
        r = app.router
        r.add_get(core + "/pods", self._list_pods)
        r.add_get(core + "/pods/{name}", self._get_factory("pods"))
        r.add_get(core + "/pods/{name}/log", self._pod_log)
        r.add_get(core + "/secrets/{name}", self._get_factory("secrets"))
        r.add_get(core + "/configmaps/{name}", self._get_factory("configmaps"))
        r.add_patch(core + "/secrets/{name}", self._patch_secret)
        r.add_post(batch + "/jobs", self._create_job)
        r.add_get(batch + "/jobs/{name}", self._get_factory("jobs"))
        r.add_get(batch + "/jobs/{name}/status", self._get_factory("jobs"))
        r.add_get(apps + "/deployments/{name}", self._get_factory("deployments"))
        r.add_patch(apps + "/deployments/{name}", self._patch_deployment)
        r.add_get(apps + "/deployments/{name}/scale", self._get_scale)
        r.add_patch(apps + "/deployments/{name}/scale", self._patch_scale)
        r.add_put(apps + "/deployments/{name}/scale", self._replace_scale)

    def _get_factory(self, resource: str) -> _Handler:
        async def get(request: web.Request) -> web.StreamResponse:
            ns, name = request.match_info["ns"], request.match_info["name"]
            with self._lock:
                return web.json_response(self._lookup(resource, ns, name))

        return get

    async def _list_pods(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        wanted = self._parse_selector(request.query.get("labelSelector", ""))
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (res, obj_ns, _n), obj in sorted(self._objects.items())
                if res == "pods" and obj_ns == ns and self._selects(wanted, obj)
            ]
            rv = str(next(self._rv))
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    @staticmethod
    def _parse_selector(selector: str) -> list[tuple[str, str, bool]]:
        terms = []
        for term in filter(None, (t.strip() for t in selector.split(","))):
            m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)", term)
            if m is None:  # set-based selectors are not served: fail loudly, not leniently
                raise _StatusError(400, f"unable to parse requirement: {term!r}")
            terms.append((m.group(1), m.group(3), m.group(2) != "!="))
        return terms

    @staticmethod
    def _selects(terms: list[tuple[str, str, bool]], obj: JsonDict) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all((labels.get(k) == v) is eq for k, v, eq in terms)

    async def _pod_log(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        with self._lock:
            self._lookup("pods", ns, name)
            text = self._logs.get((ns, name), "")
        if "tailLines" in request.query:
            tail = int(request.query["tailLines"])
            text = "".join(text.splitlines(keepends=True)[-tail:] if tail > 0 else [])
        data = text.encode()
        if "limitBytes" in request.query:
            data = data[: int(request.query["limitBytes"])]
        return web.Response(body=data, content_type="text/plain", charset="utf-8")

    async def _create_job(self, request: web.Request) -> web.StreamResponse:
        ns, body = request.match_info["ns"], request[_BODY]
        if not isinstance(body, dict):
            raise _StatusError(400, "the body of the request was not a JSON object")
        name = (body.get("metadata") or {}).get("name")
        containers = (((body.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        )
        if not name or not containers:
            raise _StatusError(422, "Job is invalid: metadata.name and containers are required")
        body.pop("status", None)
        body["status"] = {"active": 1, "startTime": _now()}
        with self._lock:
            if ("jobs", ns, name) in self._objects:
                raise _StatusError(
                    409,
                    f'jobs.batch "{name}" already exists',
                    {"name": name, "group": "batch", "kind": "jobs"},
                )
            return web.json_response(self._insert("jobs", ns, name, body), status=201)

    def _check_patch(self, request: web.Request, current: JsonDict, resource: str) -> JsonDict:
        if request.content_type not in _MERGE_TYPES:
            raise _StatusError(
                415,
                f"the body of the request was in an unknown format: "
                f"accepted media types include: {', '.join(_MERGE_TYPES)}",
            )
        patch = request[_BODY]
        if not isinstance(patch, dict):
            raise _StatusError(400, "the body of the request was not a JSON object")
        self._check_rv(patch, current, resource)
        return patch

    @staticmethod
    def _check_rv(body: JsonDict, current: JsonDict, resource: str) -> None:
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent is not None and sent != current["metadata"]["resourceVersion"]:
            name = current["metadata"]["name"]
            raise _StatusError(
                409,
                f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                {"name": name, "kind": resource.split(".")[0]},
            )

    def _apply(self, key: tuple[str, str, str], current: JsonDict, patch: JsonDict) -> JsonDict:
        return self._commit(key, current, _merge_patch(copy.deepcopy(current), patch))

    def _commit(self, key: tuple[str, str, str], current: JsonDict, merged: JsonDict) -> JsonDict:
        # Identity and bookkeeping are the server's, whatever the patch said.
        for k in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
            merged["metadata"][k] = current["metadata"][k]
        merged["kind"], merged["apiVersion"] = current["kind"], current["apiVersion"]
        if merged == current:
            return current
        if key[0] == "deployments" and merged.get("spec") != current.get("spec"):
            merged["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        self._bump(merged)
        self._objects[key] = merged
        return merged

    async def _patch_deployment(self, request: web.Request) -> web.StreamResponse:
        key = ("deployments", request.match_info["ns"], request.match_info["name"])
        with self._lock:
            current = self._lookup(*key)
            patch = self._check_patch(request, current, "deployments.apps")
            merged = _merge_patch(copy.deepcopy(current), patch)
            self._validate_replicas(merged["spec"].get("replicas"))
            return web.json_response(self._commit(key, current, merged))

    @staticmethod
    def _validate_replicas(value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _StatusError(422, f"spec.replicas: Invalid value: {value!r}")

    @staticmethod
    def _scale_of(dep: JsonDict) -> JsonDict:
        meta = dep["metadata"]
        replicas = dep["spec"]["replicas"]
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "selector": selector},
        }

    async def _get_scale(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            dep = self._lookup("deployments", request.match_info["ns"], request.match_info["name"])
            return web.json_response(self._scale_of(dep))

    async def _patch_scale(self, request: web.Request) -> web.StreamResponse:
        key = ("deployments", request.match_info["ns"], request.match_info["name"])
        with self._lock:
            current = self._lookup(*key)
            patch = self._check_patch(request, current, "deployments.apps")
            replicas = (patch.get("spec") or {}).get("replicas", current["spec"]["replicas"])
            self._validate_replicas(replicas)
            merged = self._apply(key, current, {"spec": {"replicas": replicas}})
            return web.json_response(self._scale_of(merged))

    async def _replace_scale(self, request: web.Request) -> web.StreamResponse:
        key = ("deployments", request.match_info["ns"], request.match_info["name"])
        body = request[_BODY]
        with self._lock:
            current = self._lookup(*key)
            if not isinstance(body, dict):
                raise _StatusError(400, "the body of the request was not a JSON object")
            self._check_rv(body, current, "deployments.apps")
            replicas = (body.get("spec") or {}).get("replicas")
            self._validate_replicas(replicas)
            merged = self._apply(key, current, {"spec": {"replicas": replicas}})
            return web.json_response(self._scale_of(merged))

    async def _patch_secret(self, request: web.Request) -> web.StreamResponse:
        key = ("secrets", request.match_info["ns"], request.match_info["name"])
        with self._lock:
            current = self._lookup(*key)
            patch = self._check_patch(request, current, "secrets")
            merged = _merge_patch(copy.deepcopy(current), patch)
            # stringData is write-only, folded into data as the real server does.
            string_data = merged.pop("stringData", None) or {}
            data = merged.setdefault("data", {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()})
            for k, v in data.items():
                try:
                    base64.b64decode(v, validate=True)
                except (ValueError, TypeError):
                    raise _StatusError(400, f"data[{k}]: illegal base64 data") from None
            return web.json_response(self._commit(key, current, merged))
