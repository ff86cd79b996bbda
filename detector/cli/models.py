"""Commands: ``detector train``, ``detector models compare | bench | check``."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from detector.defaults import models_dir, rules_dir
from detector.errors import ConfigError

DEFAULT_WORK = Path(tempfile.gettempdir()) / "detector-train"
SHARED_DEFAULT = Path("../shared")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _models(path: Path | None) -> Path:
    """``path``, or the packaged models; a missing folder is an error (not an empty model set)."""
    folder = path or models_dir()
    if not folder.is_dir():
        raise ConfigError("models folder not found; give an existing folder", str(folder))
    return folder


def register(app: typer.Typer) -> None:
    """Add ``train`` and the ``models`` group to the command line."""
    models_app = typer.Typer(no_args_is_help=True, help="ONNX models: compare with rules, benchmark, check.")
    app.add_typer(models_app, name="models")

    @app.command()
    def train(
        out: Annotated[Path, typer.Option("--out", help="Where the models go.")] = Path("models"),
        train_draws: Annotated[
            str, typer.Option("--train-draws", help="Matrix draws the trees are fitted on, e.g. 0-29.")
        ] = "0-29",
        calibration_draws: Annotated[
            str,
            typer.Option(
                "--calibration-draws",
                help="Matrix draws for calibration and the manifest's precision/recall, e.g. 500-539 "
                "(or from the calibration reserve, 5000-5999).",
            ),
        ] = "500-539",
        days: Annotated[float, typer.Option("--days", help="Days per draw.")] = 1.0,
        scale: Annotated[float, typer.Option("--scale", help="Honest population per draw.")] = 0.25,
        attack_accounts: Annotated[
            int, typer.Option("--attack-accounts", help="Accounts per campaign.")
        ] = 20,
        version: Annotated[int, typer.Option("--version", help="The N of <name>-v<N>.")] = 2,
        targets: Annotated[str, typer.Option("--targets")] = "account,cluster,prompt",
        shared: Annotated[
            Path, typer.Option("--shared", help="Folder with data/prompts (prompt model only).")
        ] = SHARED_DEFAULT,
        work: Annotated[Path, typer.Option("--work", help="Cache of simulated draws.")] = DEFAULT_WORK,
        dispositions: Annotated[
            Path | None,
            typer.Option(
                "--dispositions", help="Add analyst-labelled episodes (disposition store) to training."
            ),
        ] = None,
        disposition_alerts: Annotated[
            Path | None, typer.Option("--disposition-alerts", help="The alerts the dispositions are about.")
        ] = None,
        disposition_events: Annotated[
            list[Path] | None, typer.Option("--disposition-events", help="The traffic behind those alerts.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print each model's summary as JSON.")] = False,
    ) -> None:
        """Train the account, cluster and prompt classifiers; export ONNX files, manifests and cards."""
        import logging

        from detector.lab.train.draws import DrawSize, check_blocks, parse_draws
        from detector.lab.train.summary import model_summary, render_summary
        from detector.lab.train.train import TrainConfig, train_all

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            blocks = parse_draws(train_draws), parse_draws(calibration_draws)
            check_blocks(*blocks)
        except ValueError as exc:
            raise ConfigError(str(exc), "--train-draws / --calibration-draws") from exc
        extra = None
        if dispositions is not None:
            if disposition_alerts is None or not disposition_events:
                typer.echo("--dispositions needs --disposition-alerts and --disposition-events", err=True)
                raise typer.Exit(2)
            from detector.lab.train.dispositions import disposition_rows

            extra = disposition_rows(disposition_events, disposition_alerts, dispositions)
        cfg = TrainConfig(
            out=out,
            work=work,
            train_draws=blocks[0],
            calibration_draws=blocks[1],
            size=DrawSize(days=days, scale=scale, attack_accounts=attack_accounts),
            version=version,
            targets=tuple(t.strip() for t in targets.split(",") if t.strip()),
            shared=shared,
            command="detector " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            extra=extra,
        )
        summaries = [model_summary(m) for m in train_all(cfg)]
        if as_json:
            print(json.dumps(summaries, indent=2))
        else:
            print(render_summary(summaries))

    @models_app.command("compare")
    def compare_cmd(
        models: Annotated[Path | None, typer.Option("--models", help="Default: the packaged models.")] = None,
        rules: Annotated[Path | None, typer.Option("--rules", help="Default: the packaged rules.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="A held-out simulator seed.")] = 2,
        days: Annotated[float, typer.Option("--days")] = 3.0,
        scale: Annotated[float, typer.Option("--scale")] = 1.0,
        work: Annotated[Path, typer.Option("--work")] = DEFAULT_WORK,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Rules alone vs. rules plus models per campaign family and honest persona on a held-out run."""
        from detector.lab.train.compare import compare, render
        from detector.lab.train.data import simulate_run

        run_dir = simulate_run(work / f"seed{seed}-d{days:g}-s{scale:g}", seed, days, scale)
        rows = compare(run_dir, rules or rules_dir(), _models(models), run_dir / "compare")
        if as_json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            print(render(rows, seed))

    @models_app.command("bench")
    def bench_cmd(
        models: Annotated[Path | None, typer.Option("--models", help="Default: the packaged models.")] = None,
        batches: Annotated[str, typer.Option("--batches")] = "1,16,256,4096,65536",
        repeat: Annotated[int, typer.Option("--repeat")] = 3,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Scoring rows/s by batch size per model, with the onnxruntime provider each one runs on."""
        from detector.lab.bench.models import throughput

        rows = throughput(_models(models), _ints(batches), repeat)
        if as_json:
            print(json.dumps(rows, indent=2, default=str))
            return
        print("| model | provider | batch | rows/s |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['provider']} | {r['batch']} | {r['rows_per_s']:,.0f} |")

    @models_app.command("check")
    def check_cmd(
        models: Annotated[Path | None, typer.Option("--models", help="Default: the packaged models.")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Load every model against the engine's feature catalogues; print each one's provider.

        A model that does not load is an error (exit 2, one line naming the file)."""
        from detector.detect.models.runtime import ModelSet

        ms = ModelSet.load(_models(models))
        if as_json:
            print(json.dumps(dict(ms.providers), indent=2))
            return
        for stem, provider in ms.providers.items():
            print(f"{stem}: {provider}")
