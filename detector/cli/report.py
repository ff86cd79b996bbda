"""``detector report``: registered on the main command line by ``register``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command()
    def report(
        alerts: Annotated[Path, typer.Option("--alerts", help="Alerts JSON Lines (replay or the daemon's).")],
        out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
        events: Annotated[
            list[Path] | None,
            typer.Option("--events", help="Events behind the alerts, to draw account-level linkage."),
        ] = None,
        title: Annotated[str | None, typer.Option("--title")] = None,
    ) -> None:
        """Write a static HTML report for analysts: timeline, cluster sizes, linkage graph, top reasons."""
        from detector.lab.report.build import build_report

        if not alerts.is_file():
            typer.echo(f"no such alerts file: {alerts}", err=True)
            raise typer.Exit(2)
        summary = build_report(alerts, out, events, title)
        typer.echo(
            f"wrote {summary.out}: {summary.episodes} alert episodes ({summary.revisions} revisions), "
            f"{summary.accounts} accounts, {summary.clusters} clusters, "
            f"linkage graph from {summary.graph_source or 'nothing (no cluster alerts)'}"
        )
