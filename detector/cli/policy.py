"""``detector policy check | schema | cost``: registered on the main command line by ``register``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``policy`` command group to ``app``."""
    policy_app = typer.Typer(no_args_is_help=True, help="Response policy: alerts -> decisions.")
    app.add_typer(policy_app, name="policy")

    @policy_app.command("check")
    def check(
        path: Annotated[Path | None, typer.Argument(help="Policy YAML (default: the shipped one).")] = None,
    ) -> None:
        """Validate a policy file; exit 1 with one line naming the file, line and key on error."""
        from detector.decide import PolicyError, load_policy

        try:
            p = load_policy(path)
        except PolicyError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"ok: policy {p.version} ({p.mode}), {len(p.rules)} rules, {len(p.actions)} actions")

    @policy_app.command("schema")
    def schema() -> None:
        """Print the decision contract, generated from the model (contracts/decision.schema.json)."""
        from detector.decide.schema import decision_schema

        typer.echo(json.dumps(decision_schema(), indent=2))

    @policy_app.command("cost")
    def cost(
        decisions: Annotated[Path, typer.Option("--decisions", help="Decisions JSON Lines from a replay.")],
        events: Annotated[list[Path], typer.Option("--events", help="The replayed events.")],
        labels: Annotated[Path, typer.Option("--labels", help="The simulator's labels.json.")],
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Per action: honest and attacking accounts and requests the decisions would have touched."""
        from rich.console import Console

        from detector.lab.policy_cost import policy_cost, render_cost

        result = policy_cost(decisions, events, labels)
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            Console().print(render_cost(result))
