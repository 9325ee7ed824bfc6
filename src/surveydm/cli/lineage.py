"""``surveydm lineage | dependents | flag | status --stale | make | reprocess | release``: data
lineage, validity flags, staleness, target processing and data releases
(:mod:`surveydm.pipelines.lineage`)."""

from __future__ import annotations

import getpass
import json
from enum import StrEnum

import typer
from rich.table import Table
from rich.tree import Tree

from surveydm.cli.common import clear_errors, console, registry, registry_session, settings
from surveydm.db.lineage import ProductNode
from surveydm.errors import SurveydmError


class Format(StrEnum):
    """Output of ``lineage`` and ``dependents``."""

    tree = "tree"
    json = "json"
    prov = "prov"


release_app = typer.Typer(
    help="Data releases: freeze productions, show them.", no_args_is_help=True
)


def _graph(ident: str, direction: str):  # noqa: ANN202
    from surveydm.pipelines.lineage.graph import lineage
    from surveydm.pipelines.lineage.resolve import resolve

    with registry_session() as s:  # a raw exposure gets its raw product on first use
        graph = lineage(s, resolve(s, ident), direction)  # type: ignore[arg-type]
    return graph


def _show(graph, fmt: Format) -> None:  # noqa: ANN001
    from surveydm.pipelines.lineage.prov import prov_json

    if fmt == Format.json:
        typer.echo(json.dumps(graph.to_json(), indent=2))
    elif fmt == Format.prov:
        typer.echo(json.dumps(prov_json(graph), indent=2))
    else:
        console.print(render_tree(graph))


def render_tree(graph) -> Tree:  # noqa: ANN001
    """A rich tree of a lineage graph; a product met again is named, not expanded twice."""
    top = graph.nodes[graph.root]
    label = _label(top, None)
    if graph.detection is not None:
        d = graph.detection
        label = f"[bold]detection:{d.id}[/] ra={d.ra:.6f} dec={d.dec:.6f} {d.band}\n└ " + label
    tree = Tree(label)
    seen: set[int] = {graph.root}

    def grow(branch: Tree, pid: int) -> None:
        _details(branch, graph.nodes[pid])
        for role, child in graph.children(pid):
            node = graph.nodes[child]
            if child in seen:
                branch.add(f"[dim]{role}: {node.product_type} product:{child} (shown above)[/]")
                continue
            seen.add(child)
            grow(branch.add(_label(node, role)), child)

    grow(tree, graph.root)
    return tree


def _label(node: ProductNode, role: str | None) -> str:
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}.get(node.quality, "white")
    flag = "" if node.validity == "ok" else f" [bold red]{node.validity}[/]"
    where = f" {node.path}" if node.path else ""
    head = f"{role}: " if role else ""
    return (
        f"{head}[bold]{node.product_type}[/] product:{node.id}{where} "
        f"[{colour}]{node.quality}[/]{flag}"
    )


def _details(branch: Tree, node: ProductNode) -> None:
    if node.job is not None:
        j = node.job
        who = f"{j.worker}@{j.host}" if j.worker else "?"
        span = (
            f"{j.started:%Y-%m-%d %H:%M:%S} -> {j.ended:%H:%M:%S}" if j.started and j.ended else ""
        )
        branch.add(f"[cyan]job {j.id}[/] {j.task} '{j.name}' by {who} {span} ({j.status})")
    if node.production is not None:
        p = node.production
        branch.add(
            f"[magenta]production {p.id}[/] {p.pipeline} release {p.release}, "
            f"code {p.software_version}, config {p.config_hash[:12]}"
        )
    if node.calibration is not None:
        c = node.calibration
        branch.add(
            f"[blue]valid[/] {c.valid_from:%Y-%m-%d %H:%M} -> {c.valid_until:%Y-%m-%d %H:%M} UTC "
            f"({c.kind}{' ' + c.filter_tray if c.filter_tray else ''}, night {c.night})"
        )


@clear_errors
def lineage_cmd(
    ident: str = typer.Argument(..., help="product uuid, product:N, archive path, image:N, "
                                "mosaic:N or detection:N"),
    fmt: Format = typer.Option(Format.tree, "--format", "-f", help="tree, json or prov"),
) -> None:  # fmt: skip
    """Everything a product was made from, down to the raw files: calibrations with their
    validity ranges, jobs, workers, times, code versions, configurations and productions."""
    _show(_graph(ident, "inputs"), fmt)


@clear_errors
def dependents_cmd(
    ident: str = typer.Argument(..., help="as for `surveydm lineage`"),
    fmt: Format = typer.Option(Format.tree, "--format", "-f", help="tree, json or prov"),
) -> None:
    """Everything made, directly or not, from a product."""
    _show(_graph(ident, "dependents"), fmt)


@clear_errors
def flag_cmd(
    ident: str = typer.Argument(..., help="as for `surveydm lineage`"),
    bad: bool = typer.Option(False, "--bad", help="flag it bad"),
    ok: bool = typer.Option(False, "--ok", help="flag it ok"),
    qualified: bool = typer.Option(False, "--qualified", help="flag it qualified for delivery"),
    undo: bool = typer.Option(False, "--undo", help="undo the last change"),
    reason: str = typer.Option("", "--reason", "-r", help="why (required for --bad)"),
    author: str = typer.Option("", "--author", help="who (default: the login name)"),
    show_history: bool = typer.Option(False, "--history", help="print the flag's history"),
) -> None:
    """Set (or undo) the human validity flag of a product, raw exposure or image."""
    from surveydm.pipelines.lineage.flags import Validity, history, set_validity, undo_last
    from surveydm.pipelines.lineage.resolve import resolve

    chosen = [v for v, on in ((Validity.BAD, bad), (Validity.OK, ok),
                              (Validity.QUALIFIED, qualified)) if on]  # fmt: skip
    if len(chosen) + undo > 1 or (not chosen and not undo and not show_history):
        raise SurveydmError("give exactly one of --bad, --ok, --qualified, --undo (or --history)")
    who = author or getpass.getuser()
    with registry_session() as s:
        pid = resolve(s, ident).product_id
        change = None
        if undo:
            change = undo_last(s, pid, author=who)
        elif chosen:
            change = set_validity(s, pid, chosen[0], author=who, reason=reason)
        changes = history(s, pid) if show_history else []
    if change is not None:
        console.print(
            f"product:{pid}: {change.previous} -> [bold]{change.validity}[/] "
            f"(change {change.id} by {change.author})"
        )
        for name in change.errata:
            console.print(f"erratum recorded in data release {name}")
    for c in changes:
        undo_note = f" (undoes {c.undoes_id})" if c.undoes_id else ""
        console.print(
            f"{c.id}  {c.time:%Y-%m-%d %H:%M:%S}  {c.author}  {c.previous} -> {c.validity}"
            f"{undo_note}  {c.reason}"
        )


@clear_errors
def status_cmd(
    stale: bool = typer.Option(False, "--stale", help="list stale products with their causes"),
    product_type: str | None = typer.Option(None, "--type", "-t", help="only this type"),
    production: int | None = typer.Option(None, "--production", help="only this production"),
    obs_set: str | None = typer.Option(None, "--obs-set", help="only this night's products"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """Product status; with --stale, what is out of date and why (code, configuration, data)."""
    from surveydm.pipelines.lineage.stale import stale_products

    if not stale:
        raise SurveydmError("say what to show: --stale")
    with registry_session(write=False) as s:
        items = stale_products(
            s, product_type=product_type, production_id=production, obs_set=obs_set
        )
    if as_json:
        typer.echo(json.dumps([
            {"product_id": i.id, "product_type": i.product_type, "data_id": i.data_id,
             "production_id": i.production_id,
             "causes": [{"cause": c.cause, "kind": c.kind, "source_id": c.source_id}
                        for c in i.causes]}
            for i in items
        ], indent=2))  # fmt: skip
        return
    table = Table(title=f"{len(items)} stale product(s)")
    for col in ("product", "type", "data ID", "cause", "why"):
        table.add_column(col)
    for i in items:
        causes = sorted({c.cause for c in i.causes})
        why = "; ".join(c.describe() for c in i.causes)
        data_id = ",".join(f"{k}={v}" for k, v in i.data_id.items())
        table.add_row(f"product:{i.id}", i.product_type, data_id, ", ".join(causes), why)
    console.print(table)


def _run(job_id: int, processes: int) -> None:
    from surveydm.config import settings_environment
    from surveydm.orchestration import run_local

    s = settings()
    report = run_local(s.resolved_database_url, root_job_id=job_id, processes=processes,
                       env=settings_environment(s))  # fmt: skip
    console.print(f"job {job_id}: {report.summary.state}")


@clear_errors
def make_cmd(
    product_type: str = typer.Argument(..., help="master_bias, master_flat, reduced_sci..."),
    data_id: str = typer.Argument(..., help="key=value,...: obs_set=...,filter_tray=... or "
                                  "mosaic_id=N,ccd=N"),
    run: bool = typer.Option(True, "--run/--no-run", help="run the jobs now with local workers"),
    processes: int = typer.Option(1, "--processes", "-p", min=1),
    refcat: str = typer.Option("pixelsim", help="reference catalog of the nightly production"),
) -> None:  # fmt: skip
    """Return a product if it exists and is up to date, else make it (its missing or stale
    inputs first) as jobs."""
    from surveydm.cli.jobs import _load_tasks
    from surveydm.pipelines.lineage.remake import make, parse_data_id
    from surveydm.pipelines.night import nightly_config
    from surveydm.pipelines.productions import get_or_create_production

    _load_tasks(required=True)
    reg = registry()
    cfg = settings()
    production = get_or_create_production(reg, "nightly", cfg.release, nightly_config(refcat))
    result = make(reg, product_type, parse_data_id(data_id), production_id=production)
    reg.dispose()
    if result.status == "up_to_date":
        console.print(f"up to date: product:{result.product_id}")
        return
    plan = result.plan
    console.print(f"submitted job {result.job_id} in production {result.production_id}: "
                  f"{len(plan.steps) if plan else 0} step(s)")  # fmt: skip
    if run and result.job_id is not None:
        _run(result.job_id, processes)


@clear_errors
def reprocess_cmd(
    stale: bool = typer.Option(False, "--stale", help="remake the stale products"),
    product_type: str | None = typer.Option(None, "--type", "-t", help="only this type"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be remade"),
    release: str | None = typer.Option(None, "--release", help="release of the new production"),
    run: bool = typer.Option(True, "--run/--no-run", help="run the jobs now with local workers"),
    processes: int = typer.Option(1, "--processes", "-p", min=1),
) -> None:
    """Open a new production that remakes exactly the stale products (and what depends on
    them); nothing is overwritten."""
    from surveydm.cli.jobs import _load_tasks
    from surveydm.pipelines.lineage.remake import plan_reprocess, reprocess
    from surveydm.pipelines.lineage.stale import stale_products

    if not stale:
        raise SurveydmError("say what to reprocess: --stale")
    reg = registry()
    with reg.session(write=False) as s:
        items = stale_products(s, product_type=product_type)
        plans = plan_reprocess(s, items)
    if dry_run:
        for plan in plans:
            for step in plan.steps:
                ids = " ".join(f"product:{p}" for p in step.remakes)
                console.print(f"{step.task} '{step.name}': {ids}")
            for pid in plan.unmakeable:
                console.print(f"[red]cannot remake product:{pid}[/] (no job recorded)")
        console.print(f"{sum(len(p.products) for p in plans)} product(s) would be remade")
        reg.dispose()
        return
    _load_tasks(required=True)
    done = reprocess(reg, items, release=release)
    reg.dispose()
    for sub in done:
        console.print(f"production {sub.production_id}: job {sub.job_id}, "
                      f"{len(sub.plan.products)} product(s) to remake")  # fmt: skip
        if run:
            _run(sub.job_id, processes)
    if not done:
        console.print("nothing is stale")


@release_app.command("create")
@clear_errors
def release_create(
    name: str = typer.Argument(..., help="release name, e.g. DR1"),
    production: list[int] = typer.Option([], "--production", help="production id (repeat)"),
    author: str = typer.Option("", "--author", help="who (default: the login name)"),
    public: bool = typer.Option(
        False, "--public", help="readable by anyone (default: proprietary, see `users grant`)"
    ),
) -> None:
    """Freeze productions as a named, immutable data release, with generated notes."""
    from surveydm.pipelines.lineage.releases import create_release

    with registry_session() as s:
        info = create_release(
            s,
            name,
            production,
            author=author or getpass.getuser(),
            visibility="public" if public else "proprietary",
        )
    console.print(info.notes)
    console.print(f"visibility: {info.visibility}")


@release_app.command("publish")
@clear_errors
def release_publish(
    name: str = typer.Argument(...),
    proprietary: bool = typer.Option(
        False, "--proprietary", help="make it proprietary again instead"
    ),
) -> None:
    """Make a release public (readable by anyone), or proprietary again."""
    from surveydm.db.access import set_visibility

    visibility = "proprietary" if proprietary else "public"
    with registry_session() as s:
        set_visibility(s, name, visibility)
    console.print(f"release {name} is {visibility}")


@release_app.command("show")
@clear_errors
def release_show(name: str = typer.Argument(...)) -> None:
    """A release's notes and errata."""
    from surveydm.pipelines.lineage.releases import get_release

    with registry_session(write=False) as s:
        info = get_release(s, name)
    console.print(info.notes)
    console.print(f"visibility: {info.visibility}")
    for text in info.errata:
        console.print(f"erratum: {text}")


def register(app: typer.Typer) -> None:
    app.command("lineage")(lineage_cmd)
    app.command("dependents")(dependents_cmd)
    app.command("flag")(flag_cmd)
    app.command("status")(status_cmd)
    app.command("make")(make_cmd)
    app.command("reprocess")(reprocess_cmd)
    app.add_typer(release_app, name="release")
