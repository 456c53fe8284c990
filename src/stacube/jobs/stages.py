"""The stage machine of a compositing job, shared by the local runner and the SQS fan-out.

A job's ``state`` goes ``queued -> running -> completed | failed | cancelled``. While running,
its ``stage`` goes::

    scenes -> preparing -> composite [-> cogs] -> finalize -> finalizing

* ``scenes``: one tile task per tile of the output grid counts the valid and clear pixels of
  every scene from the quality band (:func:`stacube.algo.tile.tile_stats`); only jobs whose
  selection needs the counts before compositing have these tiles (the cloud filter, best-pixel
  over several tiles: :func:`stacube.jobs.tasks.scene_pass`); the others pass through at once
  and count from the composite read;
* ``preparing``: the scene statistics become the scene selection, the staging cube is created
  and the ``composite`` tiles are recorded (one caller does it: the move is guarded);
* ``composite``: one tile task per tile writes its region of the staging cube;
* ``cogs`` (queue-driven jobs with many COGs): one task per COG (variable and period) assembles
  it from the staging cube, so finalize's work is spread over the workers;
* ``finalize`` / ``finalizing``: COGs, report, commit, registration (one caller).

Errors that retrying cannot fix (:data:`PERMANENT`) fail the job at once, wherever they happen;
everything else (storage, database, a killed worker) is retried up to :data:`MAX_ATTEMPTS`
times per tile or message.
"""

from __future__ import annotations

from enum import StrEnum

from stacube.errors import Conflict, InvalidInput, NoData, NotFound

#: Tries per tile (local runner) or deliveries per message (SQS ``maxReceiveCount``).
MAX_ATTEMPTS = 3


class Stage(StrEnum):
    """A running job's stage (the ``stage`` column)."""

    SCENES = "scenes"
    PREPARING = "preparing"
    COMPOSITE = "composite"
    COGS = "cogs"
    FINALIZE = "finalize"
    FINALIZING = "finalizing"


#: Stages made of tiles (run by tile tasks: executors locally, the worker function on AWS).
TILE_STAGES = (Stage.SCENES, Stage.COMPOSITE, Stage.COGS)


class JobCancelled(Conflict):
    """The job was cancelled (or ended otherwise) while a step was running."""


#: Errors that retrying cannot fix: bad parameters, nothing to composite, a missing thing, a
#: cancelled job.
PERMANENT: tuple[type[BaseException], ...] = (InvalidInput, NoData, NotFound, JobCancelled)


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` ends the job (or, for :class:`JobCancelled`, the step) without a retry."""
    return isinstance(exc, PERMANENT)
