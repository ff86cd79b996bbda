"""Command line: the app, ``detector replay`` and ``rules check``; the other commands register from
their own modules (``lab``: simulate, evaluate, evaluate-matrix, bench; ``stream``: run, demo...).

``main`` is the entry point and the one place where errors are caught: each becomes one line on stderr
and an exit code (``detector.cli.errors``, ``docs/cli.md``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from detector import __version__
from detector.app import build_engine
from detector.cli import disposition as disposition_commands
from detector.cli import intel as intel_commands
from detector.cli import lab as lab_commands
from detector.cli import models as model_commands
from detector.cli import policy as policy_commands
from detector.cli import report as report_commands
from detector.cli import stream as stream_commands
from detector.cli.console import console, out_console
from detector.contracts import SEVERITIES
from detector.errors import ConfigError, InputError

if TYPE_CHECKING:
    from detector.decide import DecisionBook


class _Group(TyperGroup):
    """Turns an ``EOFError`` (a truncated input) into an ``InputError`` before click makes it "Aborted!"."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EOFError as exc:
            raise InputError(f"an input file ended early (a truncated .gz?): {exc}") from exc


app = typer.Typer(
    cls=_Group, add_completion=False, no_args_is_help=True, help="Distillation-attack detector."
)
rules_app = typer.Typer(no_args_is_help=True, help="Detection rules.")
app.add_typer(rules_app, name="rules")


def _version(value: bool) -> None:
    if value:
        print(f"detector {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Distillation-attack detector."""


@app.command()
def replay(
    paths: Annotated[
        list[Path], typer.Argument(help="JSONL, JSONL.gz or Parquet files, or folders of them.")
    ],
    alerts_out: Annotated[Path, typer.Option("--alerts-out", help="Alerts, one JSON object per line.")],
    rejects_out: Annotated[Path | None, typer.Option("--rejects-out", help="Dead-letter JSON Lines.")] = None,
    rules_dir: Annotated[Path | None, typer.Option("--rules")] = None,
    ip_intel: Annotated[
        Path | None,
        typer.Option(
            "--ip-intel", help="Folder of IP-intelligence files, or `default` for the packaged snapshot."
        ),
    ] = None,
    allowlist: Annotated[Path | None, typer.Option("--allowlist")] = None,
    models: Annotated[
        Path | None, typer.Option("--models", help="Folder of ONNX models (default: the packaged models).")
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
    unreadable files) were rejected (see --rejects-out), or no event came out (said in one line);
    2: an input is missing.
    """
    import polars as pl
    from pyarrow.lib import ArrowException
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from detector.io.files import expand_inputs, input_size
    from detector.runtime.replay import EXIT_REJECTED_INPUTS
    from detector.runtime.replay import replay as run_replay

    files = expand_inputs(paths)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ConfigError("no such input file; give existing files or folders", ", ".join(missing))
    if not files:
        raise ConfigError(
            "no JSONL, JSONL.gz or Parquet files in the given folders", ", ".join(map(str, paths))
        )
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
        try:
            summary = run_replay(
                files,
                engine,
                alerts_out,
                rejects_out,
                lambda n: bar.advance(task, n),
                decider=decider,
                decisions_out=decisions_out,
            )
        except (EOFError, pl.exceptions.PolarsError, ArrowException) as exc:
            where = ", ".join(map(str, files[:3])) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            raise InputError(f"cannot read the input: {type(exc).__name__}: {exc}", where) from exc
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
    if summary.events == 0:
        why = ", ".join(f"{n} {r}" for r, n in sorted(summary.rejects.items())) or "the input is empty"
        raise InputError(
            f"no events processed: {summary.records} records read, rejected: {why} "
            "(--rejects-out writes each rejected record with its reason)",
            ", ".join(map(str, files)),
        )
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
    for sev in SEVERITIES:
        t.add_row(f"  episodes: {sev} (latest revision)", str(summary.episodes.get(sev.value, 0)))
    t.add_row("alert revisions (updates included)", str(summary.revisions))
    for kind, n in sorted(suppressed.items()):
        t.add_row(f"suppressed by allow-list: {kind}", str(n))
    for key, n in sorted(summary.decisions.items()):
        t.add_row(f"decisions {key}", str(n))
    if decider is not None and decider.dry_run:
        for action, n in sorted(decider.would_enforce.items()):
            t.add_row(f"dry run, would enforce: {action}", str(n))
    out_console().print(t)


def _decider(policy: Path | None, dry_run: bool) -> DecisionBook:
    """The decision step for a replay; a bad policy file exits 2 with its one-line error."""
    from detector.decide import DecisionBook, PolicyError, load_policy

    try:
        return DecisionBook(load_policy(policy), dry_run=dry_run)
    except PolicyError as exc:
        raise ConfigError(str(exc), str(policy) if policy else "the shipped policy") from exc


@rules_app.command("check")
def rules_check(
    directory: Annotated[
        Path | None, typer.Argument(help="Rules folder (default: the rules that ship in the package).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print errors and test results as JSON.")] = False,
) -> None:
    """Validate every rule file and run its inline tests; exit 1 on any error."""
    from detector.defaults import rules_dir
    from detector.detect.rules import check_rules
    from detector.window.features import CATALOGUES

    report = check_rules(directory or rules_dir(), CATALOGUES)
    if as_json:
        tests = [
            {"rule": r.rule_id, "test": r.name, "passed": r.passed, "at": f"{r.path}:{r.line}"}
            for r in report.results
        ]
        doc = {"ok": report.ok, "rules": report.rules, "errors": [str(e) for e in report.errors]}
        print(json.dumps({**doc, "tests": tests}, indent=2))
    else:
        print(report.render() if hasattr(report, "render") else report)
    if not report.ok:
        raise typer.Exit(1)


# Commands that live in their own modules register here (their imports stay inside the command
# functions, so ``detector --help`` stays fast).
for _group in (
    lab_commands,
    stream_commands,
    model_commands,
    report_commands,
    policy_commands,
    disposition_commands,
    intel_commands,
):
    _group.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``detector`` entry point: run the command; print any error as one line on stderr.

    Returns the exit status (``docs/cli.md``). ``DETECTOR_TRACEBACK=1`` re-raises instead, for a traceback.
    """
    from detector.cli.errors import describe, environment_warnings, one_line

    for warning in environment_warnings(os.environ):
        print(f"detector: warning: {warning}", file=sys.stderr)
    try:
        rv = app(args=list(argv) if argv is not None else None, prog_name="detector", standalone_mode=False)
    except typer.Abort:
        print("detector: error: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        code = int(getattr(exc, "exit_code", 2))
        if type(exc).__name__ == "NoArgsIsHelpError":
            return code  # the help is printed already
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "detector"
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"detector: error: {one_line(text)} (see `{where} --help`)", file=sys.stderr)
        return code
    except Exception as exc:
        if os.environ.get("DETECTOR_TRACEBACK"):
            raise
        line, code = describe(exc)
        print(f"detector: error: {line}", file=sys.stderr)
        return code
    return rv if isinstance(rv, int) else 0


def entry() -> None:  # pragma: no cover - console entry point
    """``detector`` and ``python -m detector``."""
    sys.exit(main())
