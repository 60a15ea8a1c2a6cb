"""Read-only AWS checks for ``doctor``: who are we (STS), and can we see the bucket.

The RDS and WAF reads go through ``AwsClient`` (the calls the runbooks make); this
adds only what the runbooks never call: ``sts:GetCallerIdentity`` and
``s3:HeadBucket``. Errors leave as the project's error tree, through the same
mapping as ``AwsClient``. It must never call anything that changes AWS.
"""

from __future__ import annotations

import asyncio

from botocore.config import Config

from remediator.clients.aws import AwsClient
from remediator.validation.aws import check_bucket


class AwsProbe(AwsClient):
    """``AwsClient`` plus STS and HeadBucket; created and closed by ``doctor`` only."""

    def __init__(self, region: str, endpoint_url: str | None = None, *, timeout: float = 5) -> None:
        super().__init__(region, endpoint_url, connect_timeout=timeout, read_timeout=timeout)
        config = Config(
            region_name=region,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
            user_agent_appid="remediator",
        )
        self._sts = self._session.client("sts", endpoint_url=endpoint_url, config=config)

    async def caller_identity(self) -> str:
        """The ARN the credentials belong to."""
        answer = await self._run("aws.sts", "get_caller_identity", self._sts.get_caller_identity)
        return str(answer.get("Arn", "unknown identity"))

    async def head_bucket(self, bucket: str) -> None:
        check_bucket("bucket", bucket)
        await self._run("aws.s3", "head_bucket", lambda: self._s3.head_bucket(Bucket=bucket))

    async def aclose(self) -> None:
        await asyncio.to_thread(self._sts.close)
        await super().aclose()
