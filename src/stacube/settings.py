"""One settings object, read from the environment.

Variables use the ``STACUBE_`` prefix (``STACUBE_DATA_DIR``, ``STACUBE_DATABASE_URL``...), plus
the standard libpq ``PG*`` variables and the AWS SDK's ``AWS_*`` variables. The catalog database
is chosen in this order:

1. ``STACUBE_DATABASE_URL`` (any PostgreSQL with pgSTAC, e.g. RDS);
2. ``STACUBE_DATABASE_SECRET_ARN``: an AWS Secrets Manager secret in the RDS JSON format
   (``host``, ``port``, ``username``, ``password``, ``dbname``), read once per process;
3. ``PGHOST`` (with ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``);
4. the embedded cluster that ``stacube db start`` runs in ``<data_dir>/pg``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import ByteSize, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """stacube configuration; see the module docstring for the database resolution order."""

    model_config = SettingsConfigDict(env_prefix="STACUBE_", extra="ignore")

    data_dir: Path = Field(Path(".stacube"), description="Local state: database cluster, outputs.")
    database_url: str | None = Field(None, description="PostgreSQL DSN of a pgSTAC database.")
    database_secret_arn: str | None = Field(None, description="Secrets Manager secret (RDS JSON).")
    db_port: int = Field(5439, description="Port of the embedded PostgreSQL cluster.")
    db_name: str = Field("stacube", description="Database name of the embedded cluster.")
    db_pool_size: int = Field(4, description="Connections per API process (1 on Lambda).")
    db_service_user: str = Field(
        "postgres", description="System user that runs the embedded cluster when invoked as root."
    )
    output: str | None = Field(
        None, description="Default root URI of job outputs (default <data_dir>/data)."
    )
    s3_endpoint: str | None = Field(
        None, description="S3-compatible endpoint URL (e.g. http://127.0.0.1:9000); unset on AWS."
    )
    tmp_prefix: str = Field("tmp/", description="Prefix of in-progress outputs in a bucket.")
    ingest_prefix: str = Field("ingest/", description="Key prefix the S3 ingest function registers.")
    host: str = Field("127.0.0.1", description="Address `stacube up` listens on.")
    port: int = Field(8000, description="Port `stacube up` listens on.")
    root_path: str = Field("", description="Path prefix the HTTP apps are mounted under.")
    public_url: str | None = Field(None, description="Base URL clients use (default from host).")
    api_key: str | None = Field(
        None, description="An admin API key (X-API-Key or Authorization: Bearer); also turns STAC "
                          "transactions on."
    )
    transactions: bool | None = Field(
        None, description="STAC transactions on/off (default: on when STACUBE_API_KEY is set)."
    )
    oidc_jwks: str | None = Field(
        None, description="JWKS of the OIDC provider (URL or local file): accepts JWT bearer tokens."
    )
    oidc_issuer: str | None = Field(None, description="Required `iss` of JWT bearer tokens.")
    oidc_audience: str | None = Field(None, description="Required `aud` of JWT bearer tokens.")
    oidc_workspace_claim: str = Field("stacube_workspace", description="Token claim naming the caller's workspace.")
    oidc_admin_claim: str = Field("stacube_roles", description="Token claim granting admin rights.")
    oidc_admin_value: str = Field("admin", description="Value of the admin claim that means admin.")
    oidc_client_id: str | None = Field(
        None, description="Client id of the web console at the OIDC provider (a public client: "
                          "authorization code + PKCE); with the issuer and the JWKS, the console offers OIDC sign-in."
    )
    oidc_scopes: str = Field("openid", description="Scopes the web console asks the OIDC provider for.")
    read_prefixes: str | None = Field(
        None, description="Comma list of directories, s3:// and http(s):// prefixes the servers may "
                          "read assets from (default: data dir, output root, sample data, data bucket)."
    )
    data_bucket: str | None = Field(None, description="Bucket of input scenes (AWS).")
    max_tile_size: int = Field(1024, description="Largest tile edge in pixels the raster API renders.")
    # -- request limits (docs/security.md) ---------------------------------------------------------
    max_body_size: ByteSize = Field(
        "1MiB", description="Largest request body of searches, registrations, jobs and time series (413).")
    max_transaction_size: ByteSize = Field(
        "16MiB", description="Largest request body of STAC transactions (items, collections, bulk).")
    max_limit: int = Field(1000, ge=1, description="Largest page size (`limit`) a listing or search answers.")
    filter_max_length: int = Field(20000, ge=1, description="Longest CQL2 filter, in characters.")
    filter_max_depth: int = Field(10, ge=1, description="Deepest nesting of CQL2 operators.")
    filter_max_nodes: int = Field(2000, ge=1, description="Most operators and operands in one CQL2 filter.")
    filter_max_not: int = Field(3, ge=0, description="Most NOT operators nested on one path of a CQL2 filter.")
    max_part_size: int = Field(4096, ge=16, description="Largest width/height/max_size of part, preview and "
                                                         "statistics requests, in pixels.")
    max_response_size: ByteSize = Field(
        "6MB", description="Largest raster answer (/bbox, /preview, /feature...): what a Lambda response carries.")
    tile_cache_size: ByteSize = Field(
        "128MB", description="Memory of each raster API process for rendered tiles (0: no tile cache).")
    tile_store: str | None = Field(
        None, description="Folder or s3://bucket/prefix where the raster API's processes share rendered "
                          "low-zoom tiles (`tile_store_max_zoom`), and `stacube tiles seed` writes them "
                          "(unset: none).")
    tile_store_max_zoom: int = Field(
        8, ge=0, le=30, description="Highest zoom level (tile matrix) whose rendered tiles go to `tile_store`.")
    max_buffer: int = Field(64, ge=0, description="Largest `buffer` (pixels) around a raster tile.")
    max_padding: int = Field(64, ge=0, description="Largest `padding` (pixels) of a raster tile read.")
    mosaic_scan_limit: int = Field(10000, ge=1, description="Most items a mosaic tile scans (`scan_limit`).")
    mosaic_items_limit: int = Field(100, ge=1, description="Most items a mosaic tile reads (`items_limit`).")
    mosaic_time_limit: int = Field(5, ge=1, description="Most seconds a mosaic tile searches (`time_limit`).")
    anonymous_searches: int = Field(
        1000, ge=0, description="Registered searches kept for anonymous callers (least recently used go first).")
    anonymous_jobs: bool | None = Field(
        None, description="Anonymous callers may submit jobs (default: only when access control is off).")
    job_quota: int = Field(
        20_000_000_000, ge=1, description="Largest job a workspace may submit: output pixels x scenes x bands.")
    anonymous_job_quota: int = Field(
        200_000_000, ge=1, description="Largest job an anonymous caller may submit (output pixels x scenes x bands).")
    max_jobs: int = Field(2, ge=1, description="Jobs of one workspace running at once (more wait, queued).")
    workers: int = Field(0, description="Tiles a local job runs at once (0 = number of cores).")
    executor: Literal["threads", "processes"] = Field(
        "threads", description="What runs a local job's tiles side by side: threads of the job's process "
                               "(reads and kernels release the GIL; nothing to start) or worker processes.")
    tile_memory: ByteSize = Field(
        "2GiB", description="Memory one job tile may use (sets the default tile size; e.g. 512MiB)."
    )
    stage: str = Field("local", description="Deployment stage name (metric dimension on AWS).")
    plan_queue_url: str | None = Field(None, description="SQS queue of jobs to plan (AWS).")
    tile_queue_url: str | None = Field(None, description="SQS queue of job tiles (AWS).")
    finalize_queue_url: str | None = Field(None, description="SQS queue of jobs to finalize (AWS).")
    # -- the database path at scale (a pooler between the functions and PostgreSQL) -------------
    db_pool_mode: Literal["session", "transaction"] = Field(
        "session", description="`transaction` behind a transaction pooler (PgBouncer transaction "
                               "mode, RDS Proxy): no startup options, no server-side prepared "
                               "statements; the role's own search_path is used.")
    database_host: str | None = Field(
        None, description="Host to connect to instead of the secret's (the pooler's endpoint).")
    database_port: int | None = Field(None, description="Port to connect to instead of the secret's.")
    db_pool_timeout: float = Field(
        5.0, description="Seconds an API request waits for a pooled connection before a 503.")
    # -- compositing jobs driven by queues ------------------------------------------------------
    stage_lease: int = Field(
        960, description="Seconds a worker holds a job's stage move and its message sending before "
                         "another may take over (the worker timeout plus a minute).")
    job_max_age: int = Field(
        172800, description="Seconds a job may run before the reaper fails it (below the queues' "
                            "message retention).")
    finalize_fanout: int = Field(
        16, description="COGs from which finalize fans their assembly out to the tile queue.")
    finalize_max_cog_pixels: int = Field(
        2_000_000_000, description="Largest COG (pixels) a function assembles; larger ones send "
                                   "finalize to the container task.")
    finalize_cluster: str | None = Field(None, description="ECS cluster of the finalize container task.")
    finalize_task_definition: str | None = Field(None, description="ECS task definition of finalize.")
    finalize_subnets: str | None = Field(None, description="Comma list of subnets of the finalize task.")
    finalize_security_groups: str | None = Field(
        None, description="Comma list of security groups of the finalize task.")

    @property
    def pg_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL cluster."""
        return (self.data_dir / "pg").absolute()

    @property
    def output_root(self) -> str:
        """Root URI of job outputs."""
        if self.output:
            return self.output.rstrip("/")
        return (self.data_dir / "data").absolute().as_uri()

    @property
    def uses_embedded_db(self) -> bool:
        """True when no external database is configured."""
        return not (self.database_url or self.database_secret_arn or os.environ.get("PGHOST"))

    def dsn(self) -> str:
        """The PostgreSQL connection string, resolved in the documented order."""
        if self.database_url:
            return self.database_url
        if self.database_secret_arn:
            return _dsn_from_secret(self.database_secret_arn, self.database_host, self.database_port)
        if os.environ.get("PGHOST"):
            env = os.environ
            user = quote(env.get("PGUSER", "postgres"))
            password = env.get("PGPASSWORD")
            auth = f"{user}:{quote(password)}" if password else user
            return (
                f"postgresql://{auth}@{env['PGHOST']}:{env.get('PGPORT', '5432')}"
                f"/{env.get('PGDATABASE', self.db_name)}"
            )
        return f"postgresql://postgres@127.0.0.1:{self.db_port}/{self.db_name}"


@functools.lru_cache(maxsize=4)
def _dsn_from_secret(arn: str, host: str | None = None, port: int | None = None) -> str:
    """Read an RDS-format secret once per process and build a DSN from it (``host`` / ``port``
    replace the secret's: the pooler's endpoint, with the secret's credentials)."""
    import boto3

    value = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
    if host:
        value["host"] = host
    if port:
        value["port"] = port
    return dsn_from_secret_json(value)


def dsn_from_secret_json(secret: dict) -> str:
    """DSN from an RDS secret document: ``host``, ``port``, ``username``, ``password``, ``dbname``."""
    return (
        f"postgresql://{quote(secret['username'])}:{quote(secret['password'])}"
        f"@{secret['host']}:{secret.get('port', 5432)}/{secret.get('dbname', 'postgres')}"
    )


def get_settings(**overrides) -> Settings:
    """A fresh settings object from the environment, with explicit overrides applied."""
    return Settings(**overrides)


def invalid_settings_message(exc) -> str:
    """One line naming the environment variable of the first invalid setting of a
    ``pydantic.ValidationError`` raised by :class:`Settings`, what is wrong and the value given."""
    first = exc.errors()[0]
    name = "STACUBE_" + "_".join(str(part) for part in first.get("loc", ())).upper()
    given = first.get("input")
    return f"invalid setting {name}={given!r}: {first.get('msg', 'invalid value')}"

