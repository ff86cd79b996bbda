"""Commands of the lab: ``detector simulate``, ``evaluate``, ``evaluate-matrix`` and ``bench``
(labelled traffic, scoring against labels or dispositions, the evasion matrix, throughput)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from detector.cli.console import out_console
from detector.errors import ConfigError, InputError


def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    days: Annotated[float, typer.Option("--days")] = 3.0,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    scale: Annotated[float, typer.Option("--scale", help="Multiplies account counts.")] = 1.0,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="Real prompt sets (shared/data/prompts).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    lookalikes: Annotated[
        bool, typer.Option("--lookalikes", help="Add the honest look-alikes of issue 17 at realistic sizes.")
    ] = False,
) -> None:
    """Generate labelled gateway traffic: events.jsonl, events.parquet and labels.json."""
    from detector.lab.simulate import SimParams
    from detector.lab.simulate import simulate as run
    from detector.lab.simulate.params import with_lookalikes

    for name, value in (("--days", days), ("--scale", scale)):
        if not value > 0:
            raise typer.BadParameter(f"must be greater than 0, got {value:g}", param_hint=name)
    params = with_lookalikes(SimParams(), scale) if lookalikes else None
    summary = run(out, days=days, seed=seed, scale=scale, prompts_dir=prompts, params=params)
    if as_json:
        print(summary.model_dump_json(indent=2))
    else:
        out_console().print(summary)


def evaluate(
    alerts: Annotated[Path, typer.Option("--alerts")],
    labels: Annotated[Path | None, typer.Option("--labels", help="The simulator's labels.json.")] = None,
    dispositions: Annotated[
        Path | None, typer.Option("--dispositions", help="Score against analysts' dispositions (SQLite).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Score alerts against labels: recall and time-to-detect per campaign, false positives per persona;
    or, with ``--dispositions``, precision per rule and severity against analysts' verdicts."""
    from detector.lab.evaluate import evaluate as run
    from detector.lab.evaluate import render_table

    if dispositions is not None:
        from detector.lab.disposition_eval import evaluate_dispositions, render_dispositions

        if not dispositions.is_file():
            raise ConfigError("no such file", str(dispositions))
        scored = evaluate_dispositions(alerts, dispositions)
        if as_json:
            print(scored.model_dump_json(indent=2))
        else:
            out_console().print(render_dispositions(scored))
    if labels is None:
        if dispositions is None:
            raise ConfigError("give --labels, --dispositions or both", "detector evaluate")
        return
    for path in (labels, alerts):
        if not path.is_file():
            raise ConfigError("no such file", str(path))
    try:
        result = run(labels, alerts)
    except ValueError as exc:  # JSON or label-schema errors
        raise InputError(f"cannot read labels or alerts: {exc}", f"{labels}, {alerts}") from exc
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        out_console().print(render_table(result))


def evaluate_matrix(
    draws: Annotated[
        int, typer.Option("--draws", help="Random draws (one run each; every family per run).")
    ] = 4,
    held_out: Annotated[
        bool, typer.Option("--held-out", help="Run the held-out block (draws 1000..); never tune on it.")
    ] = False,
    days: Annotated[float, typer.Option("--days")] = 1.0,
    scale: Annotated[float, typer.Option("--scale", help="Honest population (1.0: ~1,650 accounts).")] = 0.25,
    attack_accounts: Annotated[int, typer.Option("--attack-accounts", help="Accounts per campaign.")] = 20,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Default: the rules that ship in the package.")
    ] = None,
    ip_intel: Annotated[
        Path | None,
        typer.Option("--ip-intel", help="Operator IP-intel folder: the matrix runs with it and without."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the result as JSON here.")] = None,
    first_draw: Annotated[
        int | None,
        typer.Option("--first-draw", help="First draw index (default 0, or 1000 with --held-out).", min=0),
    ] = None,
    verified: Annotated[
        str | None,
        typer.Option("--verified", help="Set every family's verified knob: default or all (else drawn)."),
    ] = None,
) -> None:
    """Evasion matrix: recall per (family x knob value) over random draws, FPs per honest persona."""
    from detector.defaults import rules_dir
    from detector.lab.matrix import MatrixConfig, render_markdown, run_matrix

    cfg = MatrixConfig(
        draws, held_out, days, scale, attack_accounts, rules or rules_dir(), ip_intel, first_draw, verified
    )
    result = run_matrix(cfg)
    if out is not None:
        out.write_text(result.model_dump_json(indent=2))
    print(render_markdown(result))


def bench(
    events: Annotated[
        Path | None, typer.Option("--events", help="A JSONL file to measure (default: simulate one).")
    ] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet")] = None,
    repeat: Annotated[int, typer.Option("--repeat")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measured rows as JSON.")] = False,
) -> None:
    """Print throughput: polars read ceiling vs our decode vs replay end to end (JSONL and Parquet)."""
    import io

    from detector.lab.bench.replay import run_bench

    if as_json:
        rows = run_bench(events, parquet, repeat, Console(file=io.StringIO()))
        print(json.dumps(rows, indent=2))
    else:
        run_bench(events, parquet, repeat, out_console())


def register(app: typer.Typer) -> None:
    """Add ``simulate``, ``evaluate``, ``evaluate-matrix`` and ``bench`` to the main command line."""
    app.command("simulate")(simulate)
    app.command("evaluate")(evaluate)
    app.command("evaluate-matrix")(evaluate_matrix)
    app.command("bench")(bench)
