"""The AWS client the runbooks act through: RDS, WAFv2 IP sets and S3 objects.

Every value that may come from an alert label is checked for syntax before any request
leaves the process (``InputRejected``); deeper policy (private ranges, allow-lists, rate
limits) lives in the runbooks and guards. Every botocore error is wrapped into the
project's error tree at this boundary, and no botocore type is returned.

This module must never retry on its own beyond the WAF lock-token dance (the engine's
step retry policy owns retries), never block the event loop (boto3 runs in threads), and
never put credentials in an error message.
"""

from __future__ import annotations

from remediator.clients.aws_rds import RDS, DbInstanceStatus, Rds
from remediator.clients.aws_s3 import S3, S3Objects
from remediator.clients.aws_waf import WAF, IpSet, SampledRequest, Waf
from remediator.validation.aws import (
    check_bucket,
    check_cidrs,
    check_instance_class,
    check_key,
    check_rds_identifier,
    check_waf_id,
    check_waf_name,
    check_waf_scope,
)

# The syntax checks are re-exported: runbooks reach them as ``aws.check_*``.
__all__ = [
    "RDS",
    "S3",
    "WAF",
    "AwsClient",
    "DbInstanceStatus",
    "IpSet",
    "SampledRequest",
    "check_bucket",
    "check_cidrs",
    "check_instance_class",
    "check_key",
    "check_rds_identifier",
    "check_waf_id",
    "check_waf_name",
    "check_waf_scope",
]


class AwsClient(Rds, Waf, S3Objects):
    """boto3 clients for RDS, WAFv2 and S3, created once and called from threads.

    Construction loads botocore's service models (blocking, ~0.2 s): do it at startup.
    Credentials come from boto3's default chain.
    """
