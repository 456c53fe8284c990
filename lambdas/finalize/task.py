"""The finalize container task: ``python -m lambdas.finalize.task '<finalize message>'``.

Runs in the worker image on ECS (Fargate) when a job's COGs are too large for the finalize
function (:func:`stacube.jobs.queue.finalize_mode`): the same step as the function
(:func:`stacube.jobs.queue.finalize_job`), with every CPU of the task and its larger disk. A
failure fails the job with the reason (no queue retries it); the exit status is non-zero then.
"""

from __future__ import annotations

import sys

from stacube.access.jobs import output_claim
from stacube.db.connection import session
from stacube.jobs import queue
from stacube.settings import Settings
from stacube.storage.objects import configure_gdal

from lambdas.runtime import log


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lambdas.finalize.task '<finalize message JSON>'", file=sys.stderr)
        return 2
    settings = Settings()
    configure_gdal(settings)
    try:
        with session(settings):
            outcome = queue.finalize_job(settings, queue.parse_job_message(argv[0]), in_container=True,
                                         on_register=output_claim(settings))
    except Exception as exc:  # noqa: BLE001 - the job is failed with the reason already
        log("error", "finalize task: failed", error=type(exc).__name__, reason=str(exc).splitlines()[0] if str(exc) else "")
        return 1
    log("info", f"finalize task: {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
