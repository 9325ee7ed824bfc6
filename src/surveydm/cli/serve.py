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
    ) -> None:
        """Serve the portal: operations, nightly report, archive, schema and SQL browser."""
        import uvicorn

        from surveydm.publish.web import create_app

        registry = common.registry()
        web_app = create_app(
            common.settings(),
            registry=registry,
            sql_reader_url=sql_reader_url or None,
            sql_time_limit_s=sql_time_limit,
        )
        common.console.print(f"surveydm portal on http://{host}:{port}/ (Ctrl+C stops it)")
        uvicorn.run(web_app, host=host, port=port, log_level="info")
