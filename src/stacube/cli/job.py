"""``stacube job``: compositing jobs: list, show, cancel, resume, run (state lives in the catalog)."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table

from stacube.cli.common import console, settings_from

app = typer.Typer(help="Compositing jobs: list, show, cancel, resume, run.", no_args_is_help=True)


def _duration(job: dict) -> str:
    start, end = job.get("started"), job.get("finished")
    if not start:
        return ""
    seconds = ((end or datetime.now(start.tzinfo)) - start).total_seconds()
    return f"{seconds:.1f} s"


@app.command("list")
def list_jobs(
    state: str | None = typer.Option(None, help="Only jobs in this state."),
    limit: int = typer.Option(20, help="Most jobs to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Jobs, newest first."""
    from stacube.jobs.state import JobStore  # lazy: start-up

    jobs = JobStore(settings_from()).list(state=state, limit=limit)
    if as_json:
        typer.echo(json.dumps(jobs, indent=2, default=str))
        return
    table = Table(title=f"{len(jobs)} jobs")
    for col in ("id", "state", "stage", "tiles", "collections", "created", "duration"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        table.add_row(j["id"], j["state"], j["stage"] or "", f"{j['tiles_done']}/{j['tiles_total']}",
                      ",".join(j["parameters"].get("collections", [])), str(j["created"])[:19], _duration(j))
    console.print(table)


@app.command("show")
def show(job_id: str, as_json: bool = typer.Option(False, "--json", help="Print the job as JSON.")) -> None:
    """A job's state, progress, error and (when completed) report summary."""
    from stacube.jobs.state import JobStore  # lazy: start-up

    job = JobStore(settings_from()).get(job_id)
    if as_json:
        job.pop("plan", None)
        typer.echo(json.dumps(job, indent=2, default=str))
        return
    console.print(f"job {job['id']}: {job['state']}" + (f" ({job['stage']})" if job["stage"] else ""))
    console.print(f"  tiles {job['tiles_done']}/{job['tiles_total']} done, {job['tiles_failed']} failed; "
                  f"created {str(job['created'])[:19]}, duration {_duration(job) or '-'}")
    console.print(f"  parameters: {json.dumps(job['parameters'])}")
    if job["error"]:
        console.print(f"  error: {job['error']}")
    if job["report"]:
        from stacube.cli.composite import print_summary  # lazy: start-up

        print_summary(job["report"])


@app.command("cancel")
def cancel(job_id: str) -> None:
    """Cancel a queued or running job (its workers stop at their next tile)."""
    from stacube.jobs.state import JobStore  # lazy: start-up

    job = JobStore(settings_from()).cancel(job_id)
    console.print(f"job {job_id}: {job['state']}")


@app.command("resume")
def resume(
    job_id: str,
    workers: int | None = typer.Option(None, help="Tiles run at once (1: one after the other); threads, or worker processes with STACUBE_EXECUTOR=processes."),
    dask: str | None = typer.Option(None, "--dask", help="Run tiles on a Dask cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Finish an interrupted job without redoing finished tiles (a failed or cancelled job
    starts again)."""
    from stacube.cli.composite import print_summary, run_with_progress  # lazy: start-up

    report = run_with_progress(settings_from(), job_id, workers=workers, dask=dask, transient=as_json)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_summary(report)


@app.command("run")
def run(job_id: str, workers: int | None = typer.Option(None, help="Tiles run at once (threads, or worker processes with STACUBE_EXECUTOR=processes).")) -> None:
    """Run a queued job to completion (what the jobs API's local launcher starts); a job that
    was cancelled or failed meanwhile is left alone. Its inputs are read through the server's
    read gate (only hrefs under the read prefixes)."""
    from stacube.access.gate import ReadGate  # lazy: start-up
    from stacube.access.jobs import output_claim  # lazy: start-up
    from stacube.jobs.runner import run_job  # lazy: start-up

    settings = settings_from()
    report = run_job(settings, job_id, workers=workers, restart=False, on_register=output_claim(settings),
                     gate=ReadGate.load(settings))
    typer.echo(json.dumps({"job_id": job_id, "status": report["status"]}))
