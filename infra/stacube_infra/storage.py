"""S3 buckets: input scenes (data) and job outputs (COGs, Zarr, STAC JSON)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacube_infra.config import StageConfig

#: Prefix of the data bucket watched by the ingest queue.
INGEST_PREFIX = "ingest/"
#: Prefix of the outputs bucket where jobs write before committing.
TMP_PREFIX = "tmp/"
#: Prefix of committed job outputs in the outputs bucket.
OUTPUT_PREFIX = "outputs"
#: Days after which uncommitted outputs under ``tmp/`` are deleted.
TMP_EXPIRY_DAYS = 7
#: Prefix of the outputs bucket where the raster API keeps rendered low-zoom tiles
#: (``STACUBE_TILE_STORE``): shared by every instance of the function, a cache.
TILES_PREFIX = "tiles/"
#: Days after which a stored tile is deleted (entries of old catalog versions are never read
#: again; a tile still viewed is rendered and stored again).
TILES_EXPIRY_DAYS = 30


class Storage(Construct):
    """The data and outputs buckets.

    Both block all public access, use S3-managed encryption, deny plain-HTTP
    requests and abort multipart uploads left incomplete for a day. The outputs
    bucket also expires ``tmp/`` after seven days and the raster API's stored tiles
    (``tiles/``) after thirty.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.data_bucket = self._bucket("DataBucket", [])
        self.outputs_bucket = self._bucket(
            "OutputsBucket",
            [
                s3.LifecycleRule(
                    id="expire-tmp",
                    prefix=TMP_PREFIX,
                    expiration=Duration.days(TMP_EXPIRY_DAYS),
                ),
                s3.LifecycleRule(
                    id="expire-tiles",
                    prefix=TILES_PREFIX,
                    expiration=Duration.days(TILES_EXPIRY_DAYS),
                ),
            ],
        )

    def _bucket(self, construct_id: str, rules: list[s3.LifecycleRule]) -> s3.Bucket:
        """A private, encrypted, TLS-only bucket with the given extra lifecycle rules."""
        config = self._config
        lifecycle = [
            s3.LifecycleRule(
                id="abort-incomplete-multipart",
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
            *rules,
        ]
        if config.versioned:
            lifecycle.append(
                s3.LifecycleRule(
                    id="expire-noncurrent",
                    noncurrent_version_expiration=Duration.days(30),
                )
            )
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=config.versioned,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=lifecycle,
            removal_policy=config.removal_policy,
            auto_delete_objects=config.destroy,
        )

    def notify_ingest(self, queue: sqs.IQueue) -> None:
        """Send ``s3:ObjectCreated:*`` events for keys under ``ingest/`` to ``queue``."""
        self.data_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(queue),
            s3.NotificationKeyFilter(prefix=INGEST_PREFIX),
        )

    @property
    def output_url(self) -> str:
        """``s3://<outputs bucket>/outputs``: where committed outputs go."""
        return f"s3://{self.outputs_bucket.bucket_name}/{OUTPUT_PREFIX}"

    @property
    def tile_store_url(self) -> str:
        """``s3://<outputs bucket>/tiles``: the raster API's shared tile store."""
        return f"s3://{self.outputs_bucket.bucket_name}/{TILES_PREFIX.rstrip('/')}"
