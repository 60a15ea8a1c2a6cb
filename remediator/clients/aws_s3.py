"""S3: objects, looked up and deleted."""

from __future__ import annotations

from botocore.exceptions import ClientError

from remediator.clients.aws_base import AwsApi, _status
from remediator.validation.aws import check_bucket, check_key

S3 = "aws.s3"


class S3Objects(AwsApi):
    """S3 objects; bucket names and keys checked before a request."""

    async def s3_delete_object(self, bucket: str, key: str) -> None:
        check_bucket("bucket", bucket)
        check_key("key", key)
        await self._run(S3, "delete_object", lambda: self._s3.delete_object(Bucket=bucket, Key=key))

    async def s3_object_exists(self, bucket: str, key: str) -> bool:
        check_bucket("bucket", bucket)
        check_key("key", key)

        def head() -> bool:
            try:
                self._s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
            return True

        return await self._run(S3, "head_object", head)
