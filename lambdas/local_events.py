"""The event shapes AWS sends the handlers, and a local stand-in for the SQS event source.

Used to run the real handlers without an AWS account (``make serverless-demo``, the tests in
``tests/serverless``) against any SQS / S3 API (e.g. moto's server, chosen with the standard
``AWS_ENDPOINT_URL``):

* :func:`http_event`: an API Gateway HTTP API request (payload format 2.0);
* :func:`cfn_event`: a CloudFormation custom-resource request;
* :class:`QueuePoller`: receives messages like Lambda's SQS event source mapping does, calls a
  handler with an SQS event (``Records`` with ``body``, ``receiptHandle``,
  ``attributes.ApproximateReceiveCount``, ``eventSourceARN``...), deletes the messages that
  succeeded and leaves the ``batchItemFailures`` on the queue;
* :func:`start_moto_server`: moto's server on a free loopback port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

ACCOUNT_ID = "123456789012"


def http_event(method: str, path: str, *, query: dict | None = None, body: Any = None,
               headers: dict | None = None, host: str = "abc123.execute-api.us-east-1.amazonaws.com",
               route_key: str | None = None) -> dict:
    """An API Gateway HTTP API (v2) event for ``method path?query`` with a JSON or text body."""
    raw_query = urlencode(query or {}, doseq=True)
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    all_headers = {"host": host, "x-forwarded-proto": "https", "x-forwarded-port": "443",
                   "user-agent": "stacube-local", "accept": "*/*"}
    if text is not None:
        all_headers["content-type"] = "application/json"
        all_headers["content-length"] = str(len(text.encode()))
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": route_key or f"ANY {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": host.split(".", 1)[0],
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {"method": method.upper(), "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "stacube-local"},
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key or f"ANY {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if raw_query:
        params: dict[str, str] = {}
        for key, value in (query or {}).items():
            params[key] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        event["queryStringParameters"] = params
    if text is not None:
        event["body"] = text
    return event


def response_body(response: dict) -> bytes:
    """The body of an API Gateway proxy response, decoded."""
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def response_json(response: dict) -> Any:
    """The JSON body of an API Gateway proxy response."""
    return json.loads(response_body(response))


def cfn_event(request_type: str, response_url: str, properties: dict, *,
              physical_id: str | None = None, old_properties: dict | None = None,
              function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:stacube-dev-db-bootstrap",
              ) -> dict:
    """A CloudFormation custom-resource request (``Create``, ``Update`` or ``Delete``)."""
    event = {
        "RequestType": request_type,
        "ServiceToken": function_arn,
        "ResponseURL": response_url,
        "StackId": f"arn:aws:cloudformation:us-east-1:{ACCOUNT_ID}:stack/stacube-dev/{uuid.uuid4()}",
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "DbBootstrapResource4E5D3C2B",
        "ResourceType": "Custom::StacubeDbBootstrap",
        "ResourceProperties": {"ServiceToken": function_arn, **properties},
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old_properties is not None:
        event["OldResourceProperties"] = {"ServiceToken": function_arn, **old_properties}
    return event


def sqs_record(message: dict, queue_arn: str, region: str = "us-east-1") -> dict:
    """An SQS event record from a ``ReceiveMessage`` answer's message."""
    attributes = dict(message.get("Attributes") or {})
    attributes.setdefault("ApproximateReceiveCount", "1")
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message.get("MessageAttributes") or {},
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


@dataclass
class PollResult:
    """What a :meth:`QueuePoller.drain` did."""

    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    outcomes: list[dict] = field(default_factory=list)


class QueuePoller:
    """Feeds the messages of an SQS queue to a handler, as Lambda's event source mapping does.

    Args:
        sqs: a boto3 SQS client.
        queue_url: the queue.
        batch_size: messages per invocation (the mapping's ``BatchSize``).
        retry_at_once: make failed messages visible again at once instead of after the delay
            the handler or the queue set (saves waiting outside AWS).
    """

    def __init__(self, sqs, queue_url: str, *, batch_size: int = 1, retry_at_once: bool = True):
        self.sqs = sqs
        self.queue_url = queue_url
        self.batch_size = batch_size
        self.retry_at_once = retry_at_once
        self.arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]

    def receive(self) -> list[dict]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
        return answer.get("Messages") or []

    def invoke(self, handler: Callable[[dict, Any], dict | None], messages: list[dict],
               result: PollResult) -> None:
        records = [sqs_record(m, self.arn) for m in messages]
        try:
            answer = handler({"Records": records}, None) or {}
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures") or []}
        except Exception:  # noqa: BLE001 - an invocation error fails the whole batch
            failed = {r["messageId"] for r in records}
        result.invocations += 1
        for record in records:
            ok = record["messageId"] not in failed
            result.outcomes.append({"message_id": record["messageId"], "body": record["body"],
                                    "attempt": int(record["attributes"]["ApproximateReceiveCount"]),
                                    "ok": ok})
            if ok:
                result.succeeded += 1
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
            else:
                result.failed += 1
                if self.retry_at_once:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"],
                        VisibilityTimeout=0)

    def drain(self, handler: Callable[[dict, Any], dict | None], *, max_invocations: int = 1000
              ) -> PollResult:
        """Invoke ``handler`` until the queue has no visible message (or ``max_invocations``)."""
        result = PollResult()
        while result.invocations < max_invocations:
            messages = self.receive()
            if not messages:
                break
            self.invoke(handler, messages, result)
        return result

    def depth(self) -> int:
        """Messages on the queue, visible or in flight."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto_server() -> tuple[subprocess.Popen, str]:
    """moto's server (S3, SQS, Secrets Manager...) on a free loopback port: ``(process, URL)``.

    Raises:
        RuntimeError: it did not answer within 20 s.
    """
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("moto_server did not start")
