"""``detector report``: registered on the main command line by ``register``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from detector.errors import ConfigError


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
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Write a static HTML report for analysts: timeline, cluster sizes, linkage graph, top reasons."""
        from detector.lab.report.build import build_report

        if not alerts.is_file():
            raise ConfigError(
                "no such alerts file; give the JSON Lines a replay or the daemon wrote", str(alerts)
            )
        summary = build_report(alerts, out, events, title)
        if as_json:
            typer.echo(json.dumps(dataclasses.asdict(summary), indent=2, default=str))
            return
        typer.echo(
            f"wrote {summary.out}: {summary.episodes} alert episodes ({summary.revisions} revisions), "
            f"{summary.accounts} accounts, {summary.clusters} clusters, "
            f"linkage graph from {summary.graph_source or 'nothing (no cluster alerts)'}"
        )
