"""``db-bootstrap`` function: the CloudFormation custom resource that prepares the catalog.

Event: a CloudFormation custom-resource request (``RequestType`` ``Create`` / ``Update`` /
``Delete``, ``ResponseURL``, ``StackId``, ``RequestId``, ``LogicalResourceId``,
``PhysicalResourceId`` on update and delete, ``ResourceProperties``: ``AdminSecretArn``,
``AppSecretArn``, ``DatabaseName``, ``PgstacVersion``, optionally ``StatementTimeout`` and
``IdleInTransactionTimeout``, PostgreSQL durations, defaults ``25s`` and ``60s``). The secrets are Secrets Manager secrets in
the RDS JSON format (``host``, ``port``, ``username``, ``password``, ``dbname``).

On Create and Update (idempotent, so an update re-runs it safely), as the admin user:

1. create the database ``DatabaseName`` if it is missing;
2. create the app login role (``username`` of the app secret) with the app secret's password, or
   set that password if the role exists;
3. install PostGIS and run pypgstac's migrations up to ``PgstacVersion``;
4. create stacube's job tables, keep collection extents updated by pgSTAC, and add stacube's
   triggers on pgSTAC's tables (extents never null; ``stacube.catalog_changes``, the versions the
   raster API's tile cache keys on);
5. grant ``pgstac_read``, ``pgstac_ingest`` and ``pgstac_admin``, ``CONNECT`` on the database and
   read/write on stacube's job tables to the app role, and set the role's own ``search_path``
   (``pgstac, public``: behind a transaction pooler connections send no startup options),
   ``statement_timeout`` (below the API functions' 30 s, so a runaway query cannot hold a
   connection) and ``idle_in_transaction_session_timeout`` (a function frozen or killed inside a
   transaction releases its locks and its server connection);
6. connect as the app role and read the pgSTAC version (checks the password and the grants).

On Delete it does nothing: the database (retained by default) is left alone.

The answer is always PUT to ``ResponseURL`` (``SUCCESS`` or ``FAILED`` with the reason), also when
something fails, so the stack never waits for a timeout; the function then returns normally
(raising would make Lambda invoke it again). ``Data`` holds ``PgstacVersion``, ``Database`` and
``AppUser``.

Handler: ``lambdas.db_bootstrap.handler.handler`` (event: CloudFormation custom resource).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import quote

from stacube.db.connection import redact
from stacube.db.migrate import CATALOG_TRIGGERS, registered_tables

REQUIRED = ("AdminSecretArn", "AppSecretArn", "DatabaseName", "PgstacVersion")
#: The app role's limits when the resource does not set them.
DEFAULT_TIMEOUTS = {"StatementTimeout": "25s", "IdleInTransactionTimeout": "60s"}
PGSTAC_ROLES = ("pgstac_read", "pgstac_ingest", "pgstac_admin")
#: Seconds to wait for the response URL to accept the answer.
RESPONSE_TIMEOUT = 30


def log(message: str, **fields: Any) -> None:
    print(json.dumps({"message": message, **fields}, default=str), flush=True)


def read_secret(arn: str) -> dict:
    """A Secrets Manager secret in the RDS JSON format.

    Raises:
        ValueError: the secret is not JSON with ``username`` and ``password``.
    """
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    doc = json.loads(value)
    if not isinstance(doc, dict) or "username" not in doc or "password" not in doc:
        raise ValueError(f"secret {arn} is not an RDS secret (username, password, host...)")
    return doc


def dsn(secret: dict, dbname: str, *, user: dict | None = None) -> str:
    """A libpq URL to ``dbname`` on the secret's server, as ``user`` (default: the secret's)."""
    who = user or secret
    return (f"postgresql://{quote(who['username'], safe='')}:{quote(who['password'], safe='')}"
            f"@{secret['host']}:{secret.get('port', 5432)}/{quote(dbname, safe='')}")


def _connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=15)


def create_database(admin: dict, name: str) -> bool:
    """Create database ``name`` unless it exists; True when it was created."""
    import psycopg
    from psycopg import sql

    try:
        conn = _connect(dsn(admin, "postgres"))
    except psycopg.OperationalError:
        conn = _connect(dsn(admin, admin.get("dbname") or name))
    with conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def ensure_role(conn, username: str, password: str) -> bool:
    """Create the login role, or reset its password; True when it was created."""
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(
        sql.Identifier(username), sql.Literal(password)))
    return not exists


def migrate(admin: dict, name: str, version: str) -> str:
    """PostGIS and pgSTAC ``version`` in database ``name``; returns the installed version."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    with _connect(dsn(admin, name)) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    db = PgstacDB(dsn=dsn(admin, name))
    try:
        return Migrate(db).run_migration(toversion=version)
    finally:
        db.close()


def stacube_schema(conn) -> None:
    """The tables of stacube's packages, pgSTAC keeping collection extents up to date, and
    stacube's triggers on pgSTAC's tables (collection extents never null, the catalog's change
    versions the raster API's tile cache keys on: ``stacube.catalog_changes``)."""
    for _, tables in registered_tables():
        conn.execute(tables)
    conn.execute(
        "INSERT INTO pgstac.pgstac_settings (name, value) VALUES ('update_collection_extent', 'true') "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
    for sql in CATALOG_TRIGGERS:
        conn.execute(sql)


def grant(conn, name: str, username: str, timeouts: dict | None = None) -> None:
    """The app role's rights (pgSTAC roles, the database, stacube's job tables) and settings
    (``search_path``, ``statement_timeout``, ``idle_in_transaction_session_timeout``)."""
    from psycopg import sql

    timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}

    user = sql.Identifier(username)
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(name), user))
    for role in PGSTAC_ROLES:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), user))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA stacube TO {}").format(user))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA stacube "
                         "TO {}").format(user))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA stacube GRANT SELECT, INSERT, UPDATE, "
                         "DELETE ON TABLES TO {}").format(user))
    conn.execute(sql.SQL("ALTER ROLE {} SET search_path = pgstac, public").format(user))
    conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
        user, sql.Literal(timeouts["StatementTimeout"])))
    conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
        user, sql.Literal(timeouts["IdleInTransactionTimeout"])))


def bootstrap(properties: dict) -> dict:
    """Steps 1-6 of the module docstring; returns the resource's ``Data``.

    Raises:
        KeyError / ValueError / psycopg.Error / botocore errors: the step that failed.
    """
    missing = [k for k in REQUIRED if not properties.get(k)]
    if missing:
        raise ValueError(f"missing resource properties: {', '.join(missing)}")
    admin = read_secret(properties["AdminSecretArn"])
    app = read_secret(properties["AppSecretArn"])
    name, version = properties["DatabaseName"], properties["PgstacVersion"]
    created = create_database(admin, name)
    log("database", name=name, created=created)
    with _connect(dsn(admin, name)) as conn:
        role_created = ensure_role(conn, app["username"], app["password"])
    log("app role", user=app["username"], created=role_created)
    installed = migrate(admin, name, version)
    log("pgstac", version=installed)
    with _connect(dsn(admin, name)) as conn:
        stacube_schema(conn)
        grant(conn, name, app["username"], {k: properties[k] for k in DEFAULT_TIMEOUTS if properties.get(k)})
    server = {"host": app.get("host") or admin["host"], "port": app.get("port") or admin.get("port", 5432)}
    with _connect(dsn(server, name, user=app)) as conn:
        conn.execute("SET search_path = pgstac, public")
        seen = conn.execute("SELECT pgstac.get_version()").fetchone()[0]
        conn.execute("SELECT count(*) FROM stacube.jobs").fetchone()
        conn.execute("SELECT count(*) FROM stacube.catalog_changes").fetchone()
        limits = conn.execute("SELECT current_setting('statement_timeout'), "
                              "current_setting('idle_in_transaction_session_timeout')").fetchone()
    log("app role can read the catalog", pgstac=seen, statement_timeout=limits[0],
        idle_in_transaction_session_timeout=limits[1])
    return {"PgstacVersion": installed, "Database": name, "AppUser": app["username"]}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:1000]


def send_response(event: dict, status: str, reason: str, physical_id: str, data: dict) -> dict:
    """PUT the answer to the event's pre-signed ``ResponseURL``; returns the body sent."""
    body = {
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": data,
    }
    payload = json.dumps(body).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=payload, method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(payload))})
    try:
        with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT) as answer:
            log("response sent", status=status, http_status=answer.status)
    except Exception as exc:  # noqa: BLE001 - nothing else can be done; CloudFormation times out
        log("could not send the response", error=f"{type(exc).__name__}: {exc}")
    return body


def handler(event: dict, context: Any = None) -> dict:
    """Answer one custom-resource request (see the module docstring)."""
    request = event.get("RequestType")
    properties = event.get("ResourceProperties") or {}
    physical_id = event.get("PhysicalResourceId") or (
        f"stacube-db-{properties.get('DatabaseName', 'catalog')}")
    log("request", type=request, logical_id=event.get("LogicalResourceId"),
        properties={k: v for k, v in properties.items() if k != "ServiceToken"})
    status, reason, data = "SUCCESS", "", {}
    try:
        if request in ("Create", "Update"):
            data = bootstrap(properties)
            reason = f"pgSTAC {data['PgstacVersion']} in database {data['Database']}"
        elif request == "Delete":
            reason = "nothing to do: the database is left in place"
        else:
            raise ValueError(f"unknown RequestType {request!r}")
    except Exception as exc:  # noqa: BLE001 - reported to CloudFormation
        status, reason = "FAILED", _reason(exc)
        log("bootstrap failed", reason=reason)
    return send_response(event, status, reason, physical_id, data)
