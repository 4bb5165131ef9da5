"""The command line: ``patron serve|worker|migrate|demo|sources|users|tokens|import|export``.

Every command that creates something takes ``--json`` and then prints exactly one JSON
object on stdout, for scripts.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from patron.auth import service as auth_service
from patron.collect import service as collect_service
from patron.core.db import create_db_engine
from patron.core.errors import DatabaseBehind, PatronError
from patron.core.migrations import current_revision, head_revision, upgrade
from patron.core.runtime import Runtime, tune_garbage_collector
from patron.core.settings import Settings, get_settings

# The composition root: importing it tells identity what merges and replays touch above it.
import patron.pipeline  # noqa: F401  isort: skip


class PatronGroup(TyperGroup):
    """Turns domain errors from any command into one red line and exit status 1."""

    # Typer hands every command a typer.Context; its vendored click declares the base class.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except PatronError as exc:
            console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1) from None


app = typer.Typer(cls=PatronGroup, no_args_is_help=True, add_completion=False, help=__doc__)
sources_app = typer.Typer(no_args_is_help=True, help="Sources and their write keys.")
users_app = typer.Typer(no_args_is_help=True, help="Users and roles.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens for the management API.")
import_app = typer.Typer(
    no_args_is_help=True, help="Import files of events, people, companies or deals."
)
export_app = typer.Typer(no_args_is_help=True, help="Export data as JSONL or CSV.")
identity_app = typer.Typer(no_args_is_help=True, help="Merges, unmerges and matching.")
tickets_app = typer.Typer(no_args_is_help=True, help="Support tickets and their SLAs.")
workflows_app = typer.Typer(no_args_is_help=True, help="Workflow rules and their runs.")
leads_app = typer.Typer(no_args_is_help=True, help="Lead scoring and assignment.")
app.add_typer(sources_app, name="sources")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.add_typer(identity_app, name="identity")
app.add_typer(tickets_app, name="tickets")
app.add_typer(workflows_app, name="workflows")
app.add_typer(leads_app, name="leads")

console = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def emit(data: dict[str, Any], *, as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode())
    else:
        console.print(human)


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def start_runtime(settings: Settings | None = None) -> Runtime:
    try:
        return Runtime.start(settings or get_settings())
    except DatabaseBehind as exc:
        raise fail(str(exc)) from None


def main() -> None:
    app()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="HTTP worker processes sharing the port (PATRON_WEB_WORKERS)."),
    ] = None,
) -> None:
    """Run the HTTP API, the UI and the processing loop."""
    settings = get_settings()
    runtime = start_runtime(settings)  # migrates the embedded database, or refuses to start
    host, port = host or settings.host, port or settings.port
    workers = workers or settings.web_workers
    if workers == 1:
        run_server(runtime, host, port)
        return
    from patron.supervisor import serve_with_workers

    runtime.close()
    console.print(
        f"Patron is listening on [bold]http://{host}:{port}[/bold] with {workers} workers"
    )
    raise typer.Exit(serve_with_workers(settings, host, port, workers))


def run_server(runtime: Runtime, host: str, port: int) -> None:
    import uvicorn

    from patron.app import create_app

    console.print(f"Patron is listening on [bold]http://{host}:{port}[/bold]")
    application = create_app(runtime)
    tune_garbage_collector()
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=runtime.settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def demo(
    serve_after: Annotated[
        bool, typer.Option("--serve", help="Start the server once the demo is loaded.")
    ] = False,
    people: Annotated[int, typer.Option(min=1, help="How many customers to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the generator (same seed, same shop).")] = 7,
    as_json: JsonFlag = False,
) -> None:
    """Load a synthetic online shop through the real ingestion path (once per database)."""
    from patron.demo import load_or_create

    settings = get_settings()
    runtime = start_runtime(settings)
    url = f"http://{settings.host}:{settings.port}"
    if not as_json:
        console.print(f"loading the demo shop ({people} customers) ...")
    credentials, loaded = load_or_create(runtime, people=people, seed=seed, url=url)
    summary: dict[str, Any] = {**credentials.as_dict(), "loaded_now": loaded is not None}
    if loaded is not None:
        summary.update(people=loaded.people, messages=loaded.accepted, by_type=loaded.by_type)
    emit(
        summary,
        as_json=as_json,
        human=(
            (
                "demo loaded: " + f"{loaded.people} customers, {loaded.accepted} messages\n"
                if loaded
                else "demo already loaded; reusing it\n"
            )
            + f"  URL:        [bold]{credentials.url}[/bold]\n"
            + f"  admin:      [bold]{credentials.admin_email}[/bold]"
            + f"  password: [bold]{credentials.admin_password}[/bold]\n"
            + f"  write key:  [bold]{credentials.write_key}[/bold] (source Website)"
        ),
    )
    if serve_after:
        run_server(runtime, settings.host, settings.port)


@app.command()
def worker() -> None:
    """Run the processing loop alone (production: beside `serve` with processing turned off)."""
    from patron.supervisor import run_processor

    settings = get_settings()
    start_runtime(settings).close()  # refuse a schema that is behind, with a clear message
    console.print("Patron worker is processing the event log (Ctrl+C stops it)")
    run_processor(settings)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = get_settings()
    engine = create_db_engine(settings)
    before = current_revision(engine)
    try:
        upgrade(engine)
    except Exception as exc:
        raise fail(f"migration failed at revision {before or 'none'}: {exc}") from exc
    console.print(f"database at revision {head_revision(engine)} (was {before or 'empty'})")


@sources_app.command("create")
def sources_create(
    name: str,
    kind: Annotated[str, typer.Option(help="server, browser, mobile, import or crm.")] = "server",
    origin: Annotated[
        list[str] | None, typer.Option(help="Allowed browser origin (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a source and print its write key (shown once)."""
    runtime = start_runtime()
    with runtime.sessions() as db:
        source, key = collect_service.create_source(
            db, name=name, kind=kind, allowed_origins=origin or []
        )
        db.commit()
    emit(
        {"id": str(source.id), "name": source.name, "kind": source.kind, "write_key": key},
        as_json=as_json,
        human=f"source [bold]{source.name}[/bold] created; write key: [bold]{key}[/bold]",
    )


@sources_app.command("list")
def sources_list() -> None:
    """List the sources."""
    runtime = start_runtime()
    table = Table("name", "kind", "enabled", "key prefix", "id")
    with runtime.sessions() as db:
        for s in collect_service.list_sources(db):
            table.add_row(s.name, s.kind, str(s.enabled), s.write_key_prefix, str(s.id))
    Console().print(table)


@users_app.command("create")
def users_create(
    email: str,
    role: Annotated[str, typer.Option(help="admin, manager, sales, support, marketing, analyst")],
    password: Annotated[
        str | None, typer.Option(help="Omit for an API-only user.", envvar="PATRON_NEW_PASSWORD")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a user."""
    runtime = start_runtime()
    with runtime.sessions() as db:
        user = auth_service.create_user(db, email=email, role=role, password=password, name=name)
        db.commit()
    emit(
        {"id": str(user.id), "email": user.email, "role": user.role},
        as_json=as_json,
        human=f"user [bold]{user.email}[/bold] created with role {user.role}",
    )


@tokens_app.command("create")
def tokens_create(
    email: str,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create an API token for a user and print it (shown once)."""
    runtime = start_runtime()
    with runtime.sessions() as db:
        user = auth_service.get_user_by_email(db, email)
        token, secret = auth_service.create_token(db, user=user, name=name)
        db.commit()
    emit(
        {"id": str(token.id), "email": user.email, "token": secret},
        as_json=as_json,
        human=f"API token for {user.email}: [bold]{secret}[/bold]",
    )


ImportFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to import.")
]
ImportSource = Annotated[
    str, typer.Option("--source", help="Source name; created (kind import) when missing.")
]


DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Check every row and count what would change; write nothing."),
]
RecordMap = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="COLUMN=TARGET (repeatable), or - to skip a column. Columns named like a target "
        "need no mapping; other unmapped columns are ignored.",
    ),
]
Owner = Annotated[
    str | None,
    typer.Option("--owner", help="Email of the user who owns new records without an owner column."),
]


@import_app.command("events")
def import_events(file: ImportFile, source: ImportSource, as_json: JsonFlag = False) -> None:
    """Import a JSONL file of Segment messages (one a line, each with its type)."""
    run_file_import(file, source=source, kind="events", as_json=as_json)


@import_app.command("people")
def import_people(
    file: ImportFile,
    source: ImportSource,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Column holding the source's record id.")
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="COLUMN=TARGET (repeatable). TARGET: user_id, anonymous_id, timestamp, "
            "traits.NAME or NAME (a trait, e.g. email, phone), custom.KEY (a person custom "
            "field, checked by its type), or - to skip the column. "
            "Unmapped columns become traits under their own name.",
        ),
    ] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the extension).")
    ] = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Import people from a CSV (with a header row) or JSONL file as identify messages."""
    from patron.collect.imports import parse_map_options

    run_file_import(
        file,
        source=source,
        kind="people",
        as_json=as_json,
        file_format=file_format,
        id_column=id_column,
        mapping=parse_map_options(mapping or []),
        dry_run=dry_run,
    )


@import_app.command("companies")
def import_companies(
    file: ImportFile,
    mapping: RecordMap = None,
    owner: Owner = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Import companies from a CSV, upserted by domain. Targets: name, domain, industry,
    size, owner (a user's email), tags (a;b), custom.KEY."""
    from patron.collect.imports import parse_map_options

    run_file_import(
        file,
        source=None,
        kind="companies",
        as_json=as_json,
        mapping=parse_map_options(mapping or []),
        dry_run=dry_run,
        extra={"owner": owner},
    )


@import_app.command("deals")
def import_deals(
    file: ImportFile,
    pipeline: Annotated[str, typer.Option("--pipeline", help="Name of the deals' pipeline.")],
    id_column: Annotated[
        str, typer.Option("--id-column", help="Column of the deal's id in the file's system.")
    ],
    mapping: RecordMap = None,
    owner: Owner = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Import deals from a CSV, upserted by the id column. Targets: name, amount, currency,
    stage (by name), status, lost_reason, expected_close_date, owner (email), person_email,
    person_user_id, company_domain, custom.KEY."""
    from patron.collect.imports import parse_map_options

    run_file_import(
        file,
        source=None,
        kind="deals",
        as_json=as_json,
        id_column=id_column,
        mapping=parse_map_options(mapping or []),
        dry_run=dry_run,
        extra={"owner": owner, "pipeline": pipeline},
    )


def run_file_import(
    file: Path, *, source: str | None, kind: str, as_json: bool, **options: Any
) -> None:
    """Record the import, run it with a progress bar on stderr, and print the summary.

    Companies and deals (``source`` None) come from the built-in CRM source and are
    written as the system."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from patron.collect import imports

    runtime = start_runtime()
    with runtime.sessions() as db:
        if source is None:
            found, created = imports.RECORD_KINDS[kind].source(db), False
        else:
            found, created = imports.source_for_import(db, source, create=True)
        imp = imports.create_import(
            db, source=found, kind=kind, path=file, filename=str(file), **options
        )
        db.commit()
    if created:
        console.print(f"note: created source [bold]{found.name}[/bold] (kind import)")
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TextColumn("{task.fields[rows]} rows"), console=console) as bar:
        task = bar.add_task(f"importing {file.name}", total=file.stat().st_size, rows=0)
        done = imports.run_import(
            runtime.sessions,
            imp.id,
            settings=runtime.settings,
            progress=lambda p: bar.update(task, completed=p.bytes_read, rows=p.rows_read),
        )
    summary = {
        "id": str(done.id),
        "kind": kind,
        "source": found.name,
        "source_created": created,
        "status": done.status,
        "error": done.error,
        "rows_read": done.rows_read,
        "accepted": done.accepted,
        "duplicates": done.duplicates,
        "rejected": done.rejected,
        "created": done.created,
        "updated": done.updated,
        "dry_run": done.dry_run,
        "ignored_columns": done.options.get("ignored_columns", []),
        "report_path": done.report_path,
    }
    emit(summary, as_json=as_json, human=_import_summary(done))
    if done.status != "done":
        raise fail(f"the import failed: {done.error}")


def _import_summary(done: Any) -> str:
    would = "would be " if done.dry_run else ""
    if done.kind == "events" or (done.kind == "people" and not done.dry_run):
        counts = f"{done.accepted} stored, {done.duplicates} already there"
    else:
        counts = (
            f"{done.created} {would}created, {done.updated} {would}updated, "
            f"{done.duplicates} unchanged"
        )
    text = f"import {done.status}{' (dry run)' if done.dry_run else ''}: {done.rows_read} rows, "
    text += f"{counts}, {done.rejected} rejected"
    ignored = done.options.get("ignored_columns")
    if ignored:
        text += f"\n  columns not imported: {', '.join(ignored)}"
    return text + (f"\n  rejected rows: {done.report_path}" if done.rejected else "")


@export_app.command("events")
def export_events(
    output: Annotated[Path, typer.Argument(help="JSONL file to write; - for stdout.")],
    source: Annotated[str | None, typer.Option(help="Only this source (name).")] = None,
) -> None:
    """Write the event log as JSONL (one Segment-shaped message a line), oldest first."""
    from patron.collect.exports import export_events as run_export

    runtime = start_runtime()
    with runtime.sessions() as db:
        count = run_export(db, output=output, source_name=source)
    if str(output) != "-":
        console.print(f"wrote {count} events to {output}")


@export_app.command("people")
def export_people(
    output: Annotated[Path, typer.Argument(help="JSONL file to write; - for stdout.")],
) -> None:
    """Write every person with traits, computed traits and identities as JSONL."""
    from patron.profiles.exports import export_people as run_export

    runtime = start_runtime()
    with runtime.readers() as db:
        count = run_export(db, output=output)
    if str(output) != "-":
        console.print(f"wrote {count} people to {output}")


ExportFilter = Annotated[
    list[str] | None,
    typer.Option("--filter", help="FIELD:OP:VALUE (repeatable), as the list API takes it."),
]
ExportSort = Annotated[str | None, typer.Option("--sort", help="Fields, -desc: name,-size.")]
ExportSearch = Annotated[str | None, typer.Option("--q", help="Words that must all match.")]


@export_app.command("companies")
def export_companies(
    output: Annotated[Path, typer.Argument(help="CSV file to write; - for stdout.")],
    filters: ExportFilter = None,
    sort: ExportSort = None,
    search: ExportSearch = None,
    archived: Annotated[bool, typer.Option("--archived", help="The archived ones.")] = False,
) -> None:
    """Write the (filtered) company list as CSV, custom fields as custom.KEY columns."""
    write_csv_export(output, "companies", filters, sort, search, archived=archived)


@export_app.command("deals")
def export_deals(
    output: Annotated[Path, typer.Argument(help="CSV file to write; - for stdout.")],
    filters: ExportFilter = None,
    sort: ExportSort = None,
    search: ExportSearch = None,
) -> None:
    """Write the (filtered) deal list as CSV, custom fields as custom.KEY columns."""
    write_csv_export(output, "deals", filters, sort, search)


def write_csv_export(
    output: Path,
    kind: str,
    filters: list[str] | None,
    sort: str | None,
    search: str | None,
    *,
    archived: bool = False,
) -> None:
    """Stream a CRM list as CSV, as the system (every record), with the API's filters."""
    import sys

    from patron.core.pagination import ListQuery
    from patron.crm.exports import export_csv

    runtime = start_runtime()
    query = ListQuery(filters=list(filters or []), sort=sort)
    rows = export_csv(
        runtime.readers, kind=kind, actor=None, query=query, search=search, archived=archived
    )
    count = -1  # the header
    if str(output) == "-":
        for count, line in enumerate(rows, start=-1):  # noqa: B007
            sys.stdout.write(line)
        return
    with output.open("w", newline="", encoding="utf-8") as handle:
        for count, line in enumerate(rows, start=-1):  # noqa: B007
            handle.write(line)
    console.print(f"wrote {count} {kind} to {output}")


@identity_app.command("merges")
def identity_merges(
    person: Annotated[str, typer.Argument(help="A person id.")],
    as_json: JsonFlag = False,
) -> None:
    """A person's merge history (undone merges included)."""
    from patron.identity import service as identity

    runtime = start_runtime()
    with runtime.readers() as db:
        found = identity.live_person(db, _uuid(person))
        merges = identity.merge_history(db, found.id)
        rows = [_merge_dict(m) for m in merges]
    if as_json:
        emit({"person_id": str(found.id), "merges": rows}, as_json=True, human="")
        return
    table = Table("id", "survivor", "merged", "reason", "identifiers", "at", "undone")
    for m in rows:
        table.add_row(
            str(m["id"]),
            m["survivor_id"][:8],
            m["merged_id"][:8],
            m["reason"],
            ", ".join(m["evidence"].get("identifiers", [])),
            m["created_at"][:19],
            (m["undone_at"] or "")[:19],
        )
    console.print(table)


@identity_app.command("unmerge")
def identity_unmerge(
    merge_id: Annotated[int, typer.Argument(help="The merge to undo.")],
    block: Annotated[
        list[str] | None,
        typer.Option("--block", help="kind:value of the merge to block for good (repeatable)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Split a merge: both persons come back as they would be without it."""
    from patron.identity import service as identity

    runtime = start_runtime()
    with runtime.sessions() as db:
        merge = identity.unmerge(
            db, merge_id=merge_id, settings=runtime.settings, actor=None, block=block or []
        )
        db.commit()
        out = _merge_dict(merge)
    emit(
        out,
        as_json=as_json,
        human=f"undid merge {merge_id}: {out['merged_id']} is its own person again",
    )


@identity_app.command("match")
def identity_match(
    full: Annotated[
        bool, typer.Option("--full", help="Compare everyone, not only what changed.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Record linkage: merge near-certain duplicates, queue likely ones for review."""
    from patron.identity import linkage

    runtime = start_runtime()
    summary = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=runtime.settings, actor=None, full=full
    )
    run = summary.run
    emit(
        {
            "id": run.id,
            "mode": run.mode,
            "compared": run.compared,
            "pairs": run.pairs,
            "merged": run.merged,
            "queued": run.queued,
            "merge_ids": summary.merges,
        },
        as_json=as_json,
        human=f"compared {run.compared} persons: {run.merged} merged, "
        f"{run.queued} queued for review (GET /v1/identity/match/candidates)",
    )


@tickets_app.command("sla-check")
def tickets_sla_check(as_json: JsonFlag = False) -> None:
    """Announce SLA warnings and breaches that have come due, now (the processor does it
    every PATRON_SLA_CHECK_SECONDS)."""
    from patron.crm.tickets.jobs import check_sla

    runtime = start_runtime()
    done = check_sla(runtime.sessions)
    emit(
        {"checked": done.checked, "warnings": done.warnings, "breaches": done.breaches},
        as_json=as_json,
        human=f"checked {done.checked} tickets: {done.warnings} warnings and "
        f"{done.breaches} breaches announced",
    )


@workflows_app.command("run")
def workflows_run(as_json: JsonFlag = False) -> None:
    """Run the workflow runs that are due now, and those they fire, until none is due."""
    from patron.crm.workflows.jobs import run_until_idle

    runtime = start_runtime()
    outcomes = run_until_idle(runtime.sessions, runtime.settings)
    counts = {status: outcomes[status] for status in sorted(outcomes)}
    done = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing was due"
    emit(counts, as_json=as_json, human=f"workflow runs: {done}")


@app.command()
def rebuild(as_json: JsonFlag = False) -> None:
    """Derive every person, identity, trait and computed trait again from the log."""
    from patron.pipeline import rebuild as run_rebuild

    runtime = start_runtime()
    tune_garbage_collector()  # a long batch making millions of short-lived objects
    result = run_rebuild(runtime.sessions, runtime.settings)
    emit(
        {"events": result.events, "decisions": result.decisions, "orphans": result.orphans},
        as_json=as_json,
        human=f"rebuilt from {result.events} events; {result.decisions} decided merges "
        f"applied again",
    )


@leads_app.command("retrain")
def leads_retrain(as_json: JsonFlag = False) -> None:
    """Train the predictive lead score on the won and lost history, and rescore everyone."""
    from patron.crm.leads.jobs import retrain

    runtime = start_runtime()
    model, rescored = retrain(runtime.sessions, runtime.settings)
    emit(
        {
            "version": model.version,
            "status": model.status,
            "message": model.message,
            "won": model.won,
            "lost": model.lost,
            "rescored": rescored,
        },
        as_json=as_json,
        human=f"model {model.version}: {model.message}; {rescored} persons rescored",
    )


@leads_app.command("rescore")
def leads_rescore(as_json: JsonFlag = False) -> None:
    """Compute every person's lead scores again now (decay, new rules, the current model)."""
    from patron.crm.leads.jobs import refresh_scores

    runtime = start_runtime()
    rescored = refresh_scores(runtime.sessions, runtime.settings, full=True)
    emit({"rescored": rescored}, as_json=as_json, human=f"{rescored} persons rescored")


@leads_app.command("assign")
def leads_assign(as_json: JsonFlag = False) -> None:
    """Assign every waiting lead to an owner now, by the assignment rules."""
    from patron.crm.leads.jobs import assign_waiting

    runtime = start_runtime()
    summary = assign_waiting(runtime.sessions)
    emit(
        {"assigned": summary.assigned, "waiting": summary.waiting, "by_team": summary.by_team},
        as_json=as_json,
        human=f"{summary.assigned} leads assigned; {summary.waiting} wait (no team could take "
        "them)",
    )


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise fail(f"{value!r} is not a person id") from None


def _merge_dict(merge: Any) -> dict[str, Any]:
    return {
        "id": merge.id,
        "survivor_id": str(merge.survivor_id),
        "merged_id": str(merge.merged_id),
        "reason": merge.reason,
        "evidence": merge.evidence,
        "created_at": merge.created_at.isoformat(),
        "undone_at": merge.undone_at.isoformat() if merge.undone_at else None,
    }


if __name__ == "__main__":
    main()
