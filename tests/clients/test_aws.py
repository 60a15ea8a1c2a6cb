"""AwsClient against moto in server mode, and against a local HTTP fake for failures.

State is set up and checked with a separate plain boto3 client ("admin"). Requests the
client sends are recorded by a small aiohttp server that either proxies to moto or
answers with a canned failure, so tests can see what went over the wire.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from remediator.clients.aws import AwsClient, DbInstanceStatus, IpSet
from remediator.errors import (
    InputRejected,
    TargetConflict,
    TargetError,
    TargetNotFound,
    TargetRejected,
    TargetThrottled,
    TargetTimeout,
    TargetUnavailable,
)
from tests.fixtures.moto_server import start_moto_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

REGION = "us-east-1"
ACCESS_KEY = "AKIADUMMYTESTKEY0001"
SECRET_KEY = "dummy-secret-must-never-appear-in-errors"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials, no config files, no proxies, no instance metadata lookups."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield


@pytest.fixture(scope="module")
def moto_url(aws_env: None) -> Iterator[str]:
    server = start_moto_server()
    yield server.endpoint_url
    server.stop()


@dataclass
class Admin:
    rds: Any
    waf: Any
    s3: Any


@pytest.fixture(scope="module")
def admin(moto_url: str) -> Iterator[Admin]:
    """Plain boto3 clients, independent of AwsClient, to arrange and check AWS state."""
    session = boto3.session.Session(region_name=REGION)
    clients = Admin(
        rds=session.client("rds", endpoint_url=moto_url),
        waf=session.client("wafv2", endpoint_url=moto_url),
        s3=session.client("s3", endpoint_url=moto_url),
    )
    yield clients
    for client in (clients.rds, clients.waf, clients.s3):
        client.close()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def operation(self) -> str:
        target = self.headers.get("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1]
        action = self.form.get("Action")
        return action or f"{self.method} {self.path}"

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


Reply = Callable[[Seen], Awaitable[web.StreamResponse]]
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "host"}


class FakeAws:
    """Records every request; proxies to moto unless ``reply`` is set."""

    def __init__(self, moto_url: str, session: httpx.AsyncClient) -> None:
        self.moto_url = moto_url
        self.session = session
        self.url = ""
        self.reset()

    def reset(self) -> None:
        self.seen: list[Seen] = []
        self.reply: Reply | None = None
        self.before_forward: Callable[[Seen], Awaitable[None]] | None = None
        self.release = asyncio.Event()

    def ops(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.operation == name]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.headers), await request.read())
        self.seen.append(seen)
        if self.reply is not None:
            return await self.reply(seen)
        if self.before_forward is not None:
            await self.before_forward(seen)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        # httpx, not aiohttp: werkzeug sends two Server headers, which aiohttp's strict
        # parser (asyncio debug mode) refuses.
        upstream = await self.session.request(
            request.method, self.moto_url + request.raw_path, headers=headers, content=seen.body
        )
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        return web.Response(status=upstream.status_code, body=upstream.content, headers=out)


def canned(
    status: int, body: str, content_type: str = "text/xml", headers: dict[str, str] | None = None
) -> Reply:
    async def reply(_: Seen) -> web.StreamResponse:
        return web.Response(
            status=status, text=body, content_type=content_type, headers=headers or {}
        )

    return reply


def query_error(code: str, message: str = "nope") -> str:
    return (
        '<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>r-1</RequestId></ErrorResponse>"
    )


def s3_error(code: str, message: str = "nope") -> str:
    return f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>r</RequestId></Error>"


def json_error(code: str, message: str = "nope") -> str:
    return json.dumps({"__type": code, "message": message})


JSON = "application/x-amz-json-1.1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake_server(moto_url: str) -> AsyncIterator[FakeAws]:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as session:
        fake = FakeAws(moto_url, session)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        fake.url = f"http://127.0.0.1:{port}"
        yield fake
        fake.release.set()
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def fake(fake_server: FakeAws) -> AsyncIterator[FakeAws]:
    fake_server.reset()
    yield fake_server
    fake_server.release.set()  # let any handler that was told to hang finish


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def aws(moto_url: str) -> AsyncIterator[AwsClient]:
    """AwsClient talking straight to moto."""
    client = AwsClient(REGION, endpoint_url=moto_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def via_fake(fake_server: FakeAws) -> AsyncIterator[AwsClient]:
    """AwsClient talking to the recording server (moto behind it unless a reply is canned)."""
    client = AwsClient(REGION, endpoint_url=fake_server.url, connect_timeout=2, read_timeout=10)
    yield client
    await client.aclose()


def create_instance(admin: Admin, *, multi_az: bool, instance_class: str = "db.t3.micro") -> str:
    identifier = unique("db")
    admin.rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        DBInstanceClass=instance_class,
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="admin_user",
        MasterUserPassword="password-123",
        MultiAZ=multi_az,
    )
    return identifier


@dataclass
class WafSet:
    name: str
    id: str


@pytest.fixture
def ip_set(admin: Admin) -> WafSet:
    name = unique("blocklist")
    resp = admin.waf.create_ip_set(
        Name=name,
        Scope="REGIONAL",
        IPAddressVersion="IPV4",
        Addresses=["203.0.113.7/32", "198.51.100.0/24"],
    )
    return WafSet(name, resp["Summary"]["Id"])


def addresses(admin: Admin, s: WafSet) -> set[str]:
    return set(admin.waf.get_ip_set(Name=s.name, Scope="REGIONAL", Id=s.id)["IPSet"]["Addresses"])


# -- RDS -----------------------------------------------------------------------------


async def test_describe_db_instance_reports_status_class_and_multi_az(
    aws: AwsClient, admin: Admin
) -> None:
    identifier = create_instance(admin, multi_az=True, instance_class="db.m5.large")
    got = await aws.describe_db_instance(identifier)
    assert isinstance(got, DbInstanceStatus)
    assert got.identifier == identifier
    assert got.status == "available"
    assert got.instance_class == "db.m5.large"
    assert got.multi_az is True
    assert got.pending_modified == {}


async def test_describe_db_instance_returns_pending_modifications_as_plain_dict(
    via_fake: AwsClient, fake: FakeAws
) -> None:
    fake.reply = canned(
        200,
        '<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
        "<DescribeDBInstancesResult><DBInstances><DBInstance>"
        "<DBInstanceIdentifier>prod-db</DBInstanceIdentifier>"
        "<DBInstanceClass>db.r6g.large</DBInstanceClass>"
        "<DBInstanceStatus>modifying</DBInstanceStatus><MultiAZ>false</MultiAZ>"
        "<PendingModifiedValues><DBInstanceClass>db.r6g.xlarge</DBInstanceClass>"
        "<AllocatedStorage>200</AllocatedStorage></PendingModifiedValues>"
        "</DBInstance></DBInstances></DescribeDBInstancesResult>"
        "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
        "</DescribeDBInstancesResponse>",
    )
    got = await via_fake.describe_db_instance("prod-db")
    assert (got.identifier, got.status, got.instance_class, got.multi_az) == (
        "prod-db",
        "modifying",
        "db.r6g.large",
        False,
    )
    assert type(got.pending_modified) is dict
    assert got.pending_modified == {"DBInstanceClass": "db.r6g.xlarge", "AllocatedStorage": 200}


async def test_describe_unknown_db_instance_is_rejected_permanently(aws: AwsClient) -> None:
    with pytest.raises(TargetNotFound) as info:
        await aws.describe_db_instance(unique("missing"))
    assert info.value.target == "aws.rds"
    assert "DBInstanceNotFound" in str(info.value)
    assert info.value.temporary is False


async def test_failover_db_cluster_moves_the_writer_to_another_member(
    aws: AwsClient, admin: Admin
) -> None:
    cluster = unique("cluster")
    admin.rds.create_db_cluster(
        DBClusterIdentifier=cluster,
        Engine="aurora-postgresql",
        MasterUsername="admin_user",
        MasterUserPassword="password-123",
    )
    for n in (1, 2):
        admin.rds.create_db_instance(
            DBInstanceIdentifier=f"{cluster}-{n}",
            DBClusterIdentifier=cluster,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
        )

    def writer() -> str:
        members = admin.rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0][
            "DBClusterMembers"
        ]
        return next(m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"])

    before = writer()
    await aws.failover_db_cluster(cluster)
    after = writer()
    assert {before, after} == {f"{cluster}-1", f"{cluster}-2"}


async def test_reboot_with_failover_sends_force_failover_for_multi_az(
    via_fake: AwsClient, fake: FakeAws, admin: Admin
) -> None:
    identifier = create_instance(admin, multi_az=True)
    await via_fake.reboot_db_instance_with_failover(identifier)
    [reboot] = fake.ops("RebootDBInstance")
    assert reboot.form["DBInstanceIdentifier"] == identifier
    assert reboot.form["ForceFailover"] == "true"


async def test_reboot_with_failover_refuses_single_az_without_rebooting(
    via_fake: AwsClient, fake: FakeAws, admin: Admin
) -> None:
    identifier = create_instance(admin, multi_az=False)
    with pytest.raises(TargetRejected, match="not Multi-AZ"):
        await via_fake.reboot_db_instance_with_failover(identifier)
    assert fake.ops("DescribeDBInstances")
    assert fake.ops("RebootDBInstance") == []


async def test_modify_db_instance_class_applies_immediately_and_returns_previous(
    via_fake: AwsClient, fake: FakeAws, admin: Admin
) -> None:
    identifier = create_instance(admin, multi_az=False, instance_class="db.t3.micro")
    previous = await via_fake.modify_db_instance_class(identifier, "db.r6g.large")
    assert previous == "db.t3.micro"
    now = admin.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    assert now["DBInstanceClass"] == "db.r6g.large"
    [modify] = fake.ops("ModifyDBInstance")
    assert modify.form["ApplyImmediately"] == "true"


async def test_modify_db_instance_class_to_the_current_class_sends_no_modify(
    via_fake: AwsClient, fake: FakeAws, admin: Admin
) -> None:
    identifier = create_instance(admin, multi_az=False, instance_class="db.t3.micro")
    assert await via_fake.modify_db_instance_class(identifier, "db.t3.micro") == "db.t3.micro"
    assert fake.ops("ModifyDBInstance") == []


async def test_restore_to_point_in_time_creates_the_target_instance(
    aws: AwsClient, admin: Admin
) -> None:
    source = create_instance(admin, multi_az=False)
    target = unique("restored")
    when = datetime.now(timezone(timedelta(hours=2))) - timedelta(minutes=5)
    await aws.restore_db_instance_to_point_in_time(source, target, when)
    [restored] = admin.rds.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"]
    assert restored["DBInstanceIdentifier"] == target


# -- WAFv2 ---------------------------------------------------------------------------


async def test_waf_get_ip_set_returns_addresses_and_current_lock_token(
    aws: AwsClient, admin: Admin, ip_set: WafSet
) -> None:
    got = await aws.waf_get_ip_set(ip_set.name, ip_set.id)
    raw = admin.waf.get_ip_set(Name=ip_set.name, Scope="REGIONAL", Id=ip_set.id)
    assert got == IpSet(frozenset({"203.0.113.7/32", "198.51.100.0/24"}), raw["LockToken"])


async def test_waf_add_addresses_returns_only_the_new_ones(
    aws: AwsClient, admin: Admin, ip_set: WafSet
) -> None:
    added = await aws.waf_add_addresses(
        ip_set.name, ip_set.id, ["192.0.2.10", "203.0.113.7/32", "192.0.2.10/32"]
    )
    assert added == ["192.0.2.10/32"]
    assert addresses(admin, ip_set) == {"203.0.113.7/32", "198.51.100.0/24", "192.0.2.10/32"}


async def test_waf_add_already_present_returns_empty_and_sends_no_update(
    via_fake: AwsClient, fake: FakeAws, admin: Admin, ip_set: WafSet
) -> None:
    assert await via_fake.waf_add_addresses(ip_set.name, ip_set.id, ["203.0.113.7"]) == []
    assert fake.ops("GetIPSet")
    assert fake.ops("UpdateIPSet") == []
    assert addresses(admin, ip_set) == {"203.0.113.7/32", "198.51.100.0/24"}


async def test_waf_remove_addresses_returns_only_those_that_were_there(
    aws: AwsClient, admin: Admin, ip_set: WafSet
) -> None:
    removed = await aws.waf_remove_addresses(
        ip_set.name, ip_set.id, ["203.0.113.7", "192.0.2.99/32"]
    )
    assert removed == ["203.0.113.7/32"]
    assert addresses(admin, ip_set) == {"198.51.100.0/24"}


async def test_waf_add_refuses_a_cidr_of_the_other_ip_family(
    via_fake: AwsClient, fake: FakeAws, admin: Admin, ip_set: WafSet
) -> None:
    with pytest.raises(InputRejected, match="IPV4"):
        await via_fake.waf_add_addresses(ip_set.name, ip_set.id, ["2001:db8::/32"])
    assert fake.ops("UpdateIPSet") == []
    assert addresses(admin, ip_set) == {"203.0.113.7/32", "198.51.100.0/24"}


def interfere(fake: FakeAws, admin: Admin, s: WafSet, times: int) -> list[str]:
    """Before each of the first ``times`` UpdateIPSet calls, let someone else write the set."""
    written: list[str] = []

    def write(n: int) -> None:
        raw = admin.waf.get_ip_set(Name=s.name, Scope="REGIONAL", Id=s.id)
        cidr = f"192.0.2.{200 + n}/32"
        admin.waf.update_ip_set(
            Name=s.name,
            Scope="REGIONAL",
            Id=s.id,
            Addresses=[*raw["IPSet"]["Addresses"], cidr],
            LockToken=raw["LockToken"],
        )
        written.append(cidr)

    async def before_forward(seen: Seen) -> None:
        if seen.operation == "UpdateIPSet" and len(written) < times:
            await asyncio.to_thread(write, len(written))

    fake.before_forward = before_forward
    return written


async def test_waf_add_rereads_and_retries_when_the_lock_token_went_stale(
    via_fake: AwsClient, fake: FakeAws, admin: Admin, ip_set: WafSet
) -> None:
    written = interfere(fake, admin, ip_set, times=1)
    added = await via_fake.waf_add_addresses(ip_set.name, ip_set.id, ["192.0.2.10/32"])
    assert added == ["192.0.2.10/32"]
    assert len(fake.ops("UpdateIPSet")) == 2
    # The concurrent writer's address survives: the retry was built on a fresh read.
    assert addresses(admin, ip_set) == {
        "203.0.113.7/32",
        "198.51.100.0/24",
        "192.0.2.10/32",
        *written,
    }


async def test_waf_remove_gives_up_with_conflict_after_three_retries(
    via_fake: AwsClient, fake: FakeAws, admin: Admin, ip_set: WafSet
) -> None:
    interfere(fake, admin, ip_set, times=100)
    with pytest.raises(TargetConflict) as info:
        await via_fake.waf_remove_addresses(ip_set.name, ip_set.id, ["203.0.113.7/32"])
    assert info.value.temporary is True
    assert isinstance(info.value.__cause__, Exception)
    assert len(fake.ops("UpdateIPSet")) == 4  # first try + 3 retries
    assert "203.0.113.7/32" in addresses(admin, ip_set)


async def test_waf_unknown_ip_set_is_rejected(aws: AwsClient) -> None:
    with pytest.raises(TargetRejected, match="WAFNonexistentItemException"):
        await aws.waf_get_ip_set("nothing-here", str(uuid.uuid4()))


# -- S3 ------------------------------------------------------------------------------


async def test_s3_delete_object_removes_the_object(aws: AwsClient, admin: Admin) -> None:
    bucket = unique("exports")
    admin.s3.create_bucket(Bucket=bucket)
    admin.s3.put_object(Bucket=bucket, Key="pdf/2026/report.pdf", Body=b"%PDF-1.7")
    assert await aws.s3_object_exists(bucket, "pdf/2026/report.pdf") is True
    await aws.s3_delete_object(bucket, "pdf/2026/report.pdf")
    assert admin.s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert await aws.s3_object_exists(bucket, "pdf/2026/report.pdf") is False


async def test_s3_object_exists_is_false_for_a_missing_key(aws: AwsClient, admin: Admin) -> None:
    bucket = unique("exports")
    admin.s3.create_bucket(Bucket=bucket)
    admin.s3.put_object(Bucket=bucket, Key="present.pdf", Body=b"x")
    assert await aws.s3_object_exists(bucket, "absent.pdf") is False


# -- failures mapped to the error tree -----------------------------------------------

WAF_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"

CALLS: dict[str, Callable[[AwsClient], Awaitable[object]]] = {
    "rds": lambda c: c.describe_db_instance("prod-db"),
    "waf": lambda c: c.waf_get_ip_set("blocklist", WAF_ID),
    "s3": lambda c: c.s3_delete_object("exports-bucket", "a.pdf"),
}


@pytest.mark.parametrize(
    ("service", "status", "body", "content_type"),
    [
        ("rds", 400, query_error("Throttling"), "text/xml"),
        ("rds", 400, query_error("RequestLimitExceeded"), "text/xml"),
        ("waf", 400, json_error("ThrottlingException"), JSON),
        ("waf", 400, json_error("TooManyRequestsException"), JSON),
        ("s3", 503, s3_error("SlowDown"), "application/xml"),
    ],
)
async def test_throttling_maps_to_target_throttled_without_botocore_retries(
    via_fake: AwsClient, fake: FakeAws, service: str, status: int, body: str, content_type: str
) -> None:
    fake.reply = canned(status, body, content_type, headers={"Retry-After": "7"})
    with pytest.raises(TargetThrottled) as info:
        await CALLS[service](via_fake)
    assert info.value.temporary is True
    assert info.value.retry_after == 7.0
    assert len(fake.seen) == 1


@pytest.mark.parametrize(
    ("service", "body", "content_type"),
    [
        ("rds", query_error("InternalFailure"), "text/xml"),
        ("waf", json_error("WAFInternalErrorException"), JSON),
        ("s3", s3_error("InternalError"), "application/xml"),
    ],
)
async def test_server_errors_map_to_target_unavailable(
    via_fake: AwsClient, fake: FakeAws, service: str, body: str, content_type: str
) -> None:
    fake.reply = canned(500, body, content_type)
    with pytest.raises(TargetUnavailable) as info:
        await CALLS[service](via_fake)
    assert info.value.temporary is True
    assert len(fake.seen) == 1


async def test_an_unparseable_error_page_maps_to_target_unavailable(
    via_fake: AwsClient, fake: FakeAws
) -> None:
    fake.reply = canned(502, "502 Bad Gateway\n\nupstream went away", "text/plain")
    with pytest.raises(TargetUnavailable, match="unparseable"):
        await CALLS["rds"](via_fake)


async def test_other_client_errors_map_to_target_rejected(
    via_fake: AwsClient, fake: FakeAws
) -> None:
    fake.reply = canned(403, json_error("AccessDeniedException", "not allowed"), JSON)
    with pytest.raises(TargetRejected, match="AccessDeniedException"):
        await CALLS["waf"](via_fake)


async def test_error_messages_never_carry_credentials(via_fake: AwsClient, fake: FakeAws) -> None:
    fake.reply = canned(
        403, query_error("SignatureDoesNotMatch", f"key {ACCESS_KEY} secret {SECRET_KEY}")
    )
    with pytest.raises(TargetRejected) as info:
        await CALLS["rds"](via_fake)
    text = str(info.value)
    assert "SignatureDoesNotMatch" in text
    assert ACCESS_KEY not in text
    assert SECRET_KEY not in text


async def test_a_target_that_never_answers_maps_to_target_timeout(
    fake: FakeAws,
) -> None:
    async def hang(_: Seen) -> web.StreamResponse:
        await fake.release.wait()
        return web.Response()

    fake.reply = hang
    client = AwsClient(REGION, endpoint_url=fake.url, read_timeout=0.2)
    try:
        with pytest.raises(TargetTimeout) as info:
            await client.waf_get_ip_set("blocklist", WAF_ID)
    finally:
        await client.aclose()
    assert info.value.temporary is True


async def test_connection_refused_maps_to_target_unavailable(unused_port: int) -> None:
    client = AwsClient(REGION, endpoint_url=f"http://127.0.0.1:{unused_port}", connect_timeout=1)
    try:
        with pytest.raises(TargetUnavailable, match="EndpointConnectionError"):
            await client.describe_db_instance("prod-db")
    finally:
        await client.aclose()


async def test_connection_closed_mid_request_maps_to_target_unavailable() -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AwsClient(REGION, endpoint_url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TargetUnavailable, match="ConnectionClosedError"):
            await client.s3_object_exists("exports-bucket", "a.pdf")
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


# -- input validation: nothing leaves the process --------------------------------------

NOW = datetime.now(UTC)

BAD_INPUTS: list[tuple[str, Callable[[AwsClient], Awaitable[object]]]] = [
    ("rds id starts with digit", lambda c: c.describe_db_instance("1db")),
    ("rds id double hyphen", lambda c: c.describe_db_instance("prod--db")),
    ("rds id trailing hyphen", lambda c: c.describe_db_instance("prod-db-")),
    ("rds id too long", lambda c: c.describe_db_instance("a" * 64)),
    ("rds id empty", lambda c: c.describe_db_instance("")),
    ("rds id newline", lambda c: c.describe_db_instance("prod\n")),
    ("rds id underscore", lambda c: c.failover_db_cluster("prod_cluster")),
    ("rds id not str", lambda c: c.reboot_db_instance_with_failover(42)),  # type: ignore[arg-type]
    ("instance class", lambda c: c.modify_db_instance_class("prod-db", "r6g.large; drop")),
    ("restore target", lambda c: c.restore_db_instance_to_point_in_time("a", "b c", NOW)),
    ("naive time", lambda c: c.restore_db_instance_to_point_in_time("a", "b", datetime.now())),
    ("waf name space", lambda c: c.waf_get_ip_set("block list", WAF_ID)),
    ("waf name unicode", lambda c: c.waf_get_ip_set("blöcklist", WAF_ID)),
    ("waf name too long", lambda c: c.waf_get_ip_set("b" * 129, WAF_ID)),
    ("waf id", lambda c: c.waf_get_ip_set("blocklist", "../../etc")),
    ("waf scope", lambda c: c.waf_get_ip_set("blocklist", WAF_ID, scope="GLOBAL")),
    ("cidr host bits", lambda c: c.waf_add_addresses("blocklist", WAF_ID, ["10.0.0.1/8"])),
    ("cidr garbage", lambda c: c.waf_add_addresses("blocklist", WAF_ID, ["1.2.3.4; rm"])),
    ("cidr leading zero", lambda c: c.waf_remove_addresses("blocklist", WAF_ID, ["010.0.0.1"])),
    ("cidr zone id", lambda c: c.waf_add_addresses("blocklist", WAF_ID, ["fe80::1%eth0/128"])),
    ("bucket upper", lambda c: c.s3_delete_object("Exports", "a.pdf")),
    ("bucket ip", lambda c: c.s3_delete_object("192.168.1.1", "a.pdf")),
    ("bucket dots", lambda c: c.s3_object_exists("ex..ports", "a.pdf")),
    ("bucket short", lambda c: c.s3_object_exists("ex", "a.pdf")),
    ("bucket xn prefix", lambda c: c.s3_object_exists("xn--exports", "a.pdf")),
    ("key traversal", lambda c: c.s3_delete_object("exports", "pdf/../secrets.txt")),
    ("key backslash traversal", lambda c: c.s3_delete_object("exports", "pdf\\..\\x")),
    ("key too long", lambda c: c.s3_delete_object("exports", "é" * 513)),
    ("key empty", lambda c: c.s3_delete_object("exports", "")),
    ("key control char", lambda c: c.s3_delete_object("exports", "a\x00b")),
]


@pytest.mark.parametrize(("case", "call"), BAD_INPUTS, ids=[case for case, _ in BAD_INPUTS])
async def test_bad_inputs_are_rejected_before_any_request(
    via_fake: AwsClient, fake: FakeAws, case: str, call: Callable[[AwsClient], Awaitable[object]]
) -> None:
    fake.reply = canned(500, query_error("ShouldNotBeCalled"))
    with pytest.raises(InputRejected):
        await call(via_fake)
    assert fake.seen == []


GOOD_EDGE_INPUTS: list[tuple[str, Callable[[AwsClient], Awaitable[object]]]] = [
    ("rds id 63 chars", lambda c: c.describe_db_instance("a" + "-b" * 31)),
    ("waf name 128 chars", lambda c: c.waf_get_ip_set("b_-" * 42 + "ab", WAF_ID)),
    ("bucket with dots", lambda c: c.s3_delete_object("exports.example-1", "a/b..c/ü.pdf")),
    ("key 1024 bytes", lambda c: c.s3_delete_object("exports", "é" * 512)),
]


@pytest.mark.parametrize(
    ("case", "call"), GOOD_EDGE_INPUTS, ids=[case for case, _ in GOOD_EDGE_INPUTS]
)
async def test_valid_edge_inputs_reach_the_target(
    via_fake: AwsClient, fake: FakeAws, case: str, call: Callable[[AwsClient], Awaitable[object]]
) -> None:
    fake.reply = canned(500, query_error("InternalFailure"))
    with pytest.raises(TargetError):
        await call(via_fake)
    assert len(fake.seen) == 1


async def test_calls_after_aclose_are_refused(moto_url: str) -> None:
    client = AwsClient(REGION, endpoint_url=moto_url)
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await client.describe_db_instance("prod-db")
