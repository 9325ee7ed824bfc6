"""``surveydm serve``: the operations portal and its JSON API (FastAPI + uvicorn)."""

from __future__ import annotations

import typer

from surveydm.cli import common


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command()
    @common.clear_errors
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
        port: int = typer.Option(8000, "--port", help="TCP port"),
        sql_reader_url: str = typer.Option(
            "",
            "--sql-reader-url",
            help="PostgreSQL: URL of a read-only login role for the SQL browser "
            "(default: the surveydm_reader role, set up through the registry's user)",
        ),
        sql_time_limit: float = typer.Option(
            5.0, "--sql-time-limit", help="statement time limit of the SQL browser, seconds"
        ),
        tap_maxrec: int = typer.Option(
            20_000, "--tap-maxrec", help="TAP: rows returned when a query gives no MAXREC"
        ),
        tap_maxrec_hard: int = typer.Option(
            16_000_000, "--tap-maxrec-hard", help="TAP: the most rows any query may return"
        ),
        tap_sync_time_limit: float = typer.Option(
            60.0, "--tap-sync-time-limit", help="TAP: time limit of a synchronous query, s"
        ),
        tap_async_time_limit: float = typer.Option(
            3600.0, "--tap-async-time-limit", help="TAP: default execution duration of a job, s"
        ),
        tap_jobs: int = typer.Option(
            2, "--tap-jobs", help="TAP: asynchronous jobs running at once (worker processes)"
        ),
    ) -> None:
        """Serve the portal (operations, nightly report, archive, schema, SQL browser) and the
        TAP service under /tap (docs/vo.md)."""
        import uvicorn

        from surveydm.publish.vo.tap.service import TapLimits
        from surveydm.publish.web import create_app

        tap_limits = TapLimits(
            maxrec_default=tap_maxrec,
            maxrec_hard=tap_maxrec_hard,
            sync_time_limit_s=tap_sync_time_limit,
            async_time_limit_s=tap_async_time_limit,
            async_time_limit_hard_s=max(tap_async_time_limit, 4 * 3600.0),
            max_running_jobs=tap_jobs,
        )

        registry = common.registry()
        web_app = create_app(
            common.settings(),
            registry=registry,
            sql_reader_url=sql_reader_url or None,
            sql_time_limit_s=sql_time_limit,
            tap_limits=tap_limits,
        )
        common.console.print(f"surveydm portal on http://{host}:{port}/ (Ctrl+C stops it)")
        uvicorn.run(web_app, host=host, port=port, log_level="info")
