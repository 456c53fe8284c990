"""What the handlers share: HTTP apps behind API Gateway, SQS batches, JSON log lines.

HTTP (:func:`http_handler`): Mangum adapts API Gateway HTTP API events (payload 2.0) to ASGI.
Mangum's own lifespan support would open and close the app's database pools on every
invocation, so it runs with ``lifespan="off"`` and the app's lifespan is entered once per
container, at the first request (pools of size ``STACUBE_DB_POOL_SIZE``, 1 on AWS), and never
left: the connections live as long as the container. The app is served under its API Gateway
base path (``STACUBE_ROOT_PATH``, e.g. ``/stac``) as ASGI ``root_path``, so the links it builds
(STAC links, TileJSON URLs, job links) carry that prefix.

SQS (:func:`sqs_handler`, :func:`retry_later`): a queue consumer reports partial batch failures
(``{"batchItemFailures": [{"itemIdentifier": <messageId>}]}``); a failed message is made visible
again after a back-off (30 s, 60 s, ...) instead of the queue's long visibility timeout, and right
away on its last attempt so that it reaches the dead-letter queue promptly.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from stacube.db.connection import session

#: Deliveries of a message before SQS moves it to the dead-letter queue (the queues'
#: ``maxReceiveCount``, see ``infra/stacube_infra/queues.py``).
MAX_RECEIVES = 3
#: Back-off of the first retry; doubled for each later one.
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 900


def log(level: str, message: str, **fields: Any) -> None:
    """One JSON log line on stdout (CloudWatch Logs keeps it as one event)."""
    doc = {"level": level, "message": message, **fields}
    print(json.dumps(doc, default=str), file=sys.stdout, flush=True)


# -- HTTP -------------------------------------------------------------------------------------
#: Set by the CloudFront function in front of the API to the host the client asked for, so
#: the links the apps build point at the distribution, not at API Gateway.
FORWARDED_HOST = b"x-stacube-forwarded-host"


def forwarded_host(scope: dict) -> dict:
    """``scope`` with its ``host`` header replaced by :data:`FORWARDED_HOST` when present."""
    headers = scope.get("headers") or []
    wanted = next((v for k, v in headers if k.lower() == FORWARDED_HOST), None)
    if not wanted:
        return scope
    kept = [(k, v) for k, v in headers if k.lower() not in (b"host", FORWARDED_HOST)]
    return {**scope, "headers": [(b"host", wanted), *kept]}


class RootPath:
    """Serves an ASGI app under ``root_path`` (its API Gateway base path).

    Mangum strips the base path from the request path; this puts it back as ASGI ``root_path``
    (and in front of ``path``, as ASGI servers do), so routing is unchanged and URLs built from
    ``request.base_url`` / ``url_for`` start with the base path. ``/stac`` is served as ``/stac/``.
    """

    def __init__(self, app, root_path: str):
        self.app = app
        self.root_path = "/" + root_path.strip("/") if root_path.strip("/") else ""

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = forwarded_host(scope)
        if scope["type"] in ("http", "websocket") and self.root_path:
            scope = dict(scope)
            path = scope.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            if path != self.root_path and not path.startswith(self.root_path + "/"):
                path = self.root_path + path
            elif path == self.root_path:
                path = self.root_path + "/"
            scope["root_path"] = self.root_path
            scope["path"] = path
            scope["raw_path"] = path.encode()
        await self.app(scope, receive, send)


def http_handler(app, root_path: str = "") -> Callable[[dict, Any], dict]:
    """A Lambda handler serving ``app`` (FastAPI/Starlette) to API Gateway.

    Args:
        app: the ASGI application; its lifespan is run once, at the first request.
        root_path: the API Gateway base path of the app (``/stac``), or ``""``.

    Returns:
        ``handler(event, context)`` returning an API Gateway proxy response. When the app cannot
        start (database or secret unreachable) the answer is a JSON 503 and the next request
        tries again.
    """
    import asyncio

    from mangum import Mangum

    root = "/" + root_path.strip("/") if root_path.strip("/") else ""
    adapter = Mangum(RootPath(app, root), lifespan="off", api_gateway_base_path=root or "/")
    state: dict[str, Any] = {"started": False, "context": None}

    def startup() -> None:
        context = app.router.lifespan_context(app)
        asyncio.get_event_loop().run_until_complete(context.__aenter__())
        state["context"] = context  # kept open: the pools live as long as the container
        state["started"] = True

    def handler(event: dict, context: Any = None) -> dict:
        if not state["started"]:
            try:
                startup()
            except Exception as exc:  # noqa: BLE001 - answered as 503, retried next time
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log("error", "the application could not start", reason=reason,
                    error=type(exc).__name__)
                return {
                    "statusCode": 503,
                    "headers": {"content-type": "application/json"},
                    "body": json.dumps({"code": "ServiceUnavailable",
                                        "description": f"the service could not start: {reason}"}),
                    "isBase64Encoded": False,
                }
        return adapter(event, context)

    handler.app = app  # type: ignore[attr-defined]
    return handler


# -- SQS --------------------------------------------------------------------------------------
def attempt_of(record: dict) -> int:
    """How many times this SQS message has been received (1 on the first delivery)."""
    try:
        return max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")))
    except (TypeError, ValueError):
        return 1


def retry_delay(attempt: int, exc: BaseException | None = None) -> int:
    """Seconds before a failed message is delivered again.

    ``exc.retry_in`` (when the error carries one) wins; the last attempt retries at once so the
    message moves to the dead-letter queue without waiting.
    """
    wanted = getattr(exc, "retry_in", None)
    if wanted is not None:
        return max(0, int(wanted))
    if attempt >= MAX_RECEIVES:
        return 0
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1))


_QUEUE_URLS: dict[str, str] = {}


def queue_url_of(record: dict) -> str | None:
    """The URL of the queue an SQS record came from (from its ``eventSourceARN``)."""
    arn = record.get("eventSourceARN") or ""
    if arn in _QUEUE_URLS:
        return _QUEUE_URLS[arn]
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    import boto3

    region, account, name = parts[3], parts[4], parts[5]
    url = boto3.client("sqs", region_name=region).get_queue_url(
        QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    _QUEUE_URLS[arn] = url
    return url


def retry_later(record: dict, seconds: int) -> None:
    """Make a failed message visible again in ``seconds`` (best effort: on any error the
    queue's own visibility timeout applies)."""
    try:
        url = queue_url_of(record)
        if url is None or not record.get("receiptHandle"):
            return
        import boto3

        region = (record.get("eventSourceARN") or "::::").split(":")[3] or None
        boto3.client("sqs", region_name=region).change_message_visibility(
            QueueUrl=url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=int(seconds))
    except Exception as exc:  # noqa: BLE001
        log("warning", "could not shorten the retry delay", error=f"{type(exc).__name__}: {exc}")


def fail_record(record: dict, exc: BaseException, function: str) -> dict:
    """Log a failed record, schedule its retry; returns its ``batchItemFailures`` entry."""
    attempt = attempt_of(record)
    delay = retry_delay(attempt, exc)
    log("error", f"{function}: message failed", message_id=record.get("messageId"), attempt=attempt,
        retry_in=delay, final=attempt >= MAX_RECEIVES, error=type(exc).__name__,
        reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        traceback=traceback.format_exception(exc)[-3:])
    retry_later(record, delay)
    return {"itemIdentifier": record.get("messageId", "")}


def sqs_handler(process: Callable[[str, int], Any], function: str, settings=None) -> Callable[[dict, Any], dict]:
    """A handler calling ``process(body, attempt)`` for each SQS record of the event.

    A record whose call raises is reported in ``batchItemFailures`` (and retried later); the
    others are deleted by the event source. ``process`` returns a short outcome for the log.
    With ``settings``, the invocation's database calls share one connection
    (:func:`stacube.db.connection.session`), closed when the invocation ends.
    """
    def handler(event: dict, context: Any = None) -> dict:
        failures = []
        with session(settings) if settings is not None else nullcontext():
            for record in event.get("Records") or []:
                started = time.monotonic()
                try:
                    outcome = process(record["body"], attempt_of(record))
                except Exception as exc:  # noqa: BLE001 - reported to SQS, which retries
                    failures.append(fail_record(record, exc, function))
                    continue
                log("info", f"{function}: {outcome}", message_id=record.get("messageId"),
                    attempt=attempt_of(record), seconds=round(time.monotonic() - started, 3))
        return {"batchItemFailures": failures}

    return handler
