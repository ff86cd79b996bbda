"""Command line: ``detector replay | simulate | evaluate | rules check | bench``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from detector.app import build_engine
from detector.cli import disposition as disposition_commands
from detector.cli import intel as intel_commands
from detector.cli import models as model_commands
from detector.cli import policy as policy_commands
from detector.cli import report as report_commands
from detector.cli import stream as stream_commands

if TYPE_CHECKING:
    from detector.decide import DecisionBook

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distillation-attack detector.")
rules_app = typer.Typer(no_args_is_help=True, help="Detection rules.")
app.add_typer(rules_app, name="rules")
console = Console(stderr=True)
DEFAULT_RULES = Path("rules")


@app.command()
def replay(
    paths: Annotated[
        list[Path], typer.Argument(help="JSONL, JSONL.gz or Parquet files, or folders of them.")
    ],
    alerts_out: Annotated[Path, typer.Option("--alerts-out", help="Alerts, one JSON object per line.")],
    rejects_out: Annotated[Path | None, typer.Option("--rejects-out", help="Dead-letter JSON Lines.")] = None,
    rules_dir: Annotated[Path | None, typer.Option("--rules")] = None,
    ip_intel: Annotated[
        Path | None, typer.Option("--ip-intel", help="Folder of IP-intelligence files.")
    ] = None,
    allowlist: Annotated[Path | None, typer.Option("--allowlist")] = None,
    models: Annotated[
        Path | None, typer.Option("--models", help="Folder of ONNX models (default: settings, models/).")
    ] = None,
    no_models: Annotated[bool, typer.Option("--no-models", help="Rules only.")] = False,
    summary_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    decisions_out: Annotated[
        Path | None, typer.Option("--decisions-out", help="Response decisions and lifts, JSON Lines.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Response policy YAML (default: the shipped one).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Mark decisions dry-run; count them.")] = False,
    partner_intel: Annotated[
        Path | None, typer.Option("--partner-intel", help="Partner STIX bundle(s): the shared_intel family.")
    ] = None,
    community_key_file: Annotated[Path | None, typer.Option("--community-key-file")] = None,
) -> None:
    """Replay logged traffic through the engine, deterministically, and write alerts (and decisions).

    Exit 0: every input record was read and decoded; 5: completed, but some inputs (records, rows or
    unreadable files) were rejected (see --rejects-out); 2: an input is missing.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from detector.io.files import expand_inputs, input_size
    from detector.runtime.replay import EXIT_REJECTED_INPUTS
    from detector.runtime.replay import replay as run_replay

    files = expand_inputs(paths)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        console.print(f"[red]no such input: {', '.join(missing)}")
        raise typer.Exit(2)
    engine = build_engine(
        rules_dir,
        ip_intel,
        allowlist,
        False if no_models else (models or True),
        partner_intel,
        community_key_file,
    )
    decider = _decider(policy, dry_run) if decisions_out or policy or dry_run else None
    total = sum(input_size(f) for f in files)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=total)
        summary = run_replay(
            files,
            engine,
            alerts_out,
            rejects_out,
            lambda n: bar.advance(task, n),
            decider=decider,
            decisions_out=decisions_out,
        )
    out = {
        "records": summary.records,
        "events": summary.events,
        "duplicates": summary.duplicates,
        "rejects": dict(sorted(summary.rejects.items())),
        "episodes_by_severity": dict(sorted(summary.episodes.items())),
        "episodes": summary.episodes.total(),
        "revisions": summary.revisions,
        "suppressed": dict(engine.stats.suppressed),
        "late": engine.stats.late,
    }
    if decider is not None:
        out["decisions"] = dict(sorted(summary.decisions.items()))
        out["would_enforce"] = dict(sorted(decider.would_enforce.items()))
    if summary_json:
        print(json.dumps(out, indent=2))
    else:
        _print_replay_summary(summary, engine.stats.suppressed, decider)
    if summary.rejects:
        raise typer.Exit(EXIT_REJECTED_INPUTS)


def _print_replay_summary(summary: Any, suppressed: Any, decider: DecisionBook | None = None) -> None:
    t = Table(title="replay summary")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("records read", str(summary.records))
    t.add_row("events processed", str(summary.events))
    t.add_row("duplicates", str(summary.duplicates))
    for reason, n in sorted(summary.rejects.items()):
        t.add_row(f"rejected: {reason}", str(n))
    t.add_row("alert episodes", str(summary.episodes.total()))
    for sev in ("low", "medium", "high", "critical"):
        t.add_row(f"  episodes: {sev} (latest revision)", str(summary.episodes.get(sev, 0)))
    t.add_row("alert revisions (updates included)", str(summary.revisions))
    for kind, n in sorted(suppressed.items()):
        t.add_row(f"suppressed by allow-list: {kind}", str(n))
    for key, n in sorted(summary.decisions.items()):
        t.add_row(f"decisions {key}", str(n))
    if decider is not None and decider.dry_run:
        for action, n in sorted(decider.would_enforce.items()):
            t.add_row(f"dry run, would enforce: {action}", str(n))
    Console().print(t)


def _decider(policy: Path | None, dry_run: bool) -> DecisionBook:
    """The decision step for a replay; a bad policy file exits 2 with its one-line error."""
    from detector.decide import DecisionBook, PolicyError, load_policy

    try:
        return DecisionBook(load_policy(policy), dry_run=dry_run)
    except PolicyError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    days: Annotated[float, typer.Option("--days")] = 3.0,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    scale: Annotated[float, typer.Option("--scale", help="Multiplies account counts.")] = 1.0,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="Real prompt sets (shared/data/prompts).")
    ] = None,
) -> None:
    """Generate labelled gateway traffic: events.jsonl, events.parquet and labels.json."""
    from detector.lab.simulate import simulate as run

    summary = run(out, days=days, seed=seed, scale=scale, prompts_dir=prompts)
    console.print(summary)


@app.command()
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

        scored = evaluate_dispositions(alerts, dispositions)
        if as_json:
            print(scored.model_dump_json(indent=2))
        else:
            Console().print(render_dispositions(scored))
    if labels is None:
        if dispositions is None:
            console.print("[red]give --labels, --dispositions or both")
            raise typer.Exit(2)
        return
    result = run(labels, alerts)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        Console().print(render_table(result))


@app.command("evaluate-matrix")
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
    rules: Annotated[Path, typer.Option("--rules")] = DEFAULT_RULES,
    ip_intel: Annotated[
        Path | None,
        typer.Option("--ip-intel", help="Operator IP-intel folder: the matrix runs with it and without."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the result as JSON here.")] = None,
) -> None:
    """Evasion matrix: recall per (family x knob value) over random draws, FPs per honest persona."""
    from detector.lab.matrix import MatrixConfig, render_markdown, run_matrix

    cfg = MatrixConfig(draws, held_out, days, scale, attack_accounts, rules, ip_intel)
    result = run_matrix(cfg)
    if out is not None:
        out.write_text(result.model_dump_json(indent=2))
    print(render_markdown(result))


@rules_app.command("check")
def rules_check(
    directory: Annotated[Path, typer.Argument(help="Rules folder.")] = DEFAULT_RULES,
) -> None:
    """Validate every rule file and run its inline tests; exit 1 on any error."""
    from detector.detect.rules import check_rules
    from detector.window.features import CATALOGUES

    report = check_rules(directory, CATALOGUES)
    print(report.render() if hasattr(report, "render") else report)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def bench(
    events: Annotated[
        Path | None, typer.Option("--events", help="A JSONL file to measure (default: simulate one).")
    ] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet")] = None,
    repeat: Annotated[int, typer.Option("--repeat")] = 3,
) -> None:
    """Print throughput: polars read ceiling vs our decode vs replay end to end (JSONL and Parquet)."""
    from detector.lab.bench.replay import run_bench

    run_bench(events, parquet, repeat)


# Commands that live in their own modules register here (their imports stay inside the command
# functions, so ``detector --help`` stays fast).
for _group in (
    stream_commands,
    model_commands,
    report_commands,
    policy_commands,
    disposition_commands,
    intel_commands,
):
    _group.register(app)


def main() -> None:  # pragma: no cover - console entry point
    """Entry point for ``python -m detector``."""
    sys.exit(app())
