"""``stacube process``: your own Python functions run tile by tile over the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from stacube.cli.common import console, server_collections, settings_from
from stacube.cli.composite import print_summary, run_with_progress

app = typer.Typer(help="Processes (Python functions run tile by tile): list, validate, run, serve.",
                  no_args_is_help=True)


@app.command("list")
def list_processes(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The registered processes and their parameters.

    Packages register processes in the entry point group stacube.processes; only these run
    over HTTP (POST /jobs).
    """
    from stacube.errors import StacubeError  # lazy: start-up
    from stacube.jobs.processes import load_registered, registered  # lazy: start-up

    rows = []
    for name, ep in sorted(registered().items()):
        row = {"name": name, "entry_point": ep.value}
        try:
            process = load_registered(name)
            row.update(version=process.version, description=process.description,
                       parameters=process.parameters_schema())
        except StacubeError as exc:
            row["error"] = exc.message
        rows.append(row)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} registered processes")
    for col in ("name", "version", "description", "parameters", "entry point"):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = ", ".join(((r.get("parameters") or {}).get("properties") or {}))
        table.add_row(r["name"], r.get("version", ""), r.get("error") or r.get("description", ""), params,
                      r["entry_point"])
    console.print(table)


@app.command("validate")
def validate(config: Path = typer.Argument(..., help="The process configuration (YAML).")) -> None:
    """Check a process configuration without running it.

    Checks the keys, the module and its execute function, the parameters against the process's
    schema, the collections, bands and scenes, and that the output root is writable.
    """
    from stacube.jobs.process_config import read_config  # lazy: start-up
    from stacube.jobs.runner import check  # lazy: start-up

    spec, process = read_config(config)
    plan = check(spec, settings_from())
    gb = plan.geobox
    outputs = ", ".join(spec.outputs) if spec.outputs else "read off the first result"
    console.print(f"ok: process {process.name} (version {process.version}), job {spec.job_id()}")
    console.print(f"  {len(plan.items)} scenes of {', '.join(spec.collections)}; grid {gb.shape.x}x{gb.shape.y} px "
                  f"in {gb.crs}, {len(plan.tile_indices())} tile(s), halo {spec.halo} px, "
                  f"{len(plan.periods)} period(s)")
    console.print(f"  outputs: {outputs}; to {plan.output_root} as {plan.output_collection}")


@app.command("run")
def run(
    config: Path = typer.Argument(..., help="The process configuration (YAML)."),
    workers: int | None = typer.Option(None, help="Tiles run at once (default: cores; 1: one after the other); threads, or worker processes with STACUBE_EXECUTOR=processes."),
    dask: str | None = typer.Option(None, "--dask", help="Run tiles on a Dask cluster (scheduler address)."),
    as_json: bool = typer.Option(False, "--json", help="Print the job report as JSON on stdout."),
) -> None:
    """Run a process tile by tile: COGs, a Zarr cube and a report, registered as STAC Items.

    An interrupted run resumes (this command again, or stacube job resume ID). Tiles where the
    process raised are left nodata and listed in the report with their traceback; the command
    then exits non-zero.
    """
    from stacube.errors import StacubeError  # lazy: start-up
    from stacube.jobs.process_config import read_config  # lazy: start-up
    from stacube.jobs.runner import check, submit  # lazy: start-up

    spec, _ = read_config(config)
    settings = settings_from()
    plan = check(spec, settings)  # input errors and an unwritable output end here: no job is recorded
    job, _ = submit(spec, settings)
    report = run_with_progress(settings, job["id"], workers=workers, dask=dask, transient=as_json, plan=plan)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_summary(report)
    if report.get("failed_tiles"):
        first = report["errors"][0]
        raise StacubeError(f"the process failed on {report['failed_tiles']} of {report['grid']['tiles']} tiles "
                           f"(tile {first['tile']}: {first['error']}); the other tiles are written and the "
                           "report lists every error with its traceback")


@app.command("serve")
def serve(
    config: Path = typer.Argument(..., help="The process configuration (YAML)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (the server runs the configuration's code)."),
    port: int = typer.Option(8001, help="Port."),
) -> None:
    """Preview a process on a map: tiles computed on demand, in the foreground.

    Paths: / (the map), /tiles/{z}/{x}/{y}.png?output=&rescale=MIN,MAX&colormap_name=.
    """
    import uvicorn

    from stacube.jobs.process_config import read_config  # lazy: start-up
    from stacube.storage.objects import configure_gdal  # lazy: start-up
    from stacube_services.process_preview import create_preview_app  # lazy: start-up

    spec, process = read_config(config)
    settings = settings_from()
    configure_gdal(settings)
    app = create_preview_app(settings, spec)
    console.print(f"previewing process {process.name} at http://{host}:{port}/ (Ctrl-C stops)")
    server_collections()
    uvicorn.run(app, host=host, port=port, log_level="warning")
