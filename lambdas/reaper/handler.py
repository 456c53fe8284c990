"""``reaper`` function: heals and fails queue-driven jobs that stopped moving.

Events:

* an EventBridge scheduled event (every five minutes): :func:`stacube.jobs.reaper.reap` (takes
  over a stage move or message sending whose worker died, sends a lost plan message again, fails
  jobs older than ``STACUBE_JOB_MAX_AGE`` with the reason);
* SQS records of the ``plan``, ``tile`` and ``finalize`` dead-letter queues (the queue is told
  by the record's ``eventSourceARN``, ``...-<queue>-dlq``): :func:`stacube.jobs.reaper.dead_letter`
  fails the message's job with the reason (a timeout, memory or throttling when no attempt
  recorded an error). Reports partial batch failures.

Handler: ``lambdas.reaper.handler.handler`` (event: EventBridge schedule, or SQS).
"""

from __future__ import annotations

from stacube.db.connection import session
from stacube.jobs import reaper
from stacube.settings import Settings

from lambdas.runtime import MAX_RECEIVES, attempt_of, fail_record, log

settings = Settings()
KINDS = ("plan", "tile", "finalize")


def dead_queue_kind(record: dict) -> str | None:
    """``plan``, ``tile`` or ``finalize`` for a record of that queue's dead-letter queue."""
    name = (record.get("eventSourceARN") or "").rsplit(":", 1)[-1]
    for kind in KINDS:
        if name.endswith(f"-{kind}-dlq"):
            return kind
    return None


def handler(event: dict, context=None) -> dict:
    with session(settings):
        records = event.get("Records")
        if records is None:  # the schedule
            done = reaper.reap(settings)
            log("info", f"reaper: {len(done)} jobs handled", actions=done)
            return {"handled": done}
        failures = []
        for record in records:
            kind = dead_queue_kind(record)
            try:
                if kind is None:
                    raise ValueError(f"not a dead-letter queue of {', '.join(KINDS)}: {record.get('eventSourceARN')}")
                # a dead message was received maxReceiveCount times on its own queue
                outcome = reaper.dead_letter(settings, kind, record["body"], MAX_RECEIVES)
            except Exception as exc:  # noqa: BLE001 - reported to SQS, which retries
                failures.append(fail_record(record, exc, "reaper"))
                continue
            log("info", f"reaper: {outcome}", message_id=record.get("messageId"), attempt=attempt_of(record))
        return {"batchItemFailures": failures}
