"""``detector disposition ALERT_ID VERDICT``: registered on the main command line by ``register``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

#: Where dispositions go unless ``--store`` or ``DETECTOR_DISPOSITIONS`` says otherwise.
DEFAULT_STORE = Path("state/dispositions.sqlite")


def register(app: typer.Typer) -> None:
    """Add the ``disposition`` command to ``app``."""

    @app.command()
    def disposition(
        alert_id: Annotated[str, typer.Argument(help="The alert's id (al-...).")],
        verdict: Annotated[str, typer.Argument(help="confirm | false_positive | benign_explained")],
        note: Annotated[str, typer.Option("--note", help="Why (the analyst's words; no prompt text).")] = "",
        analyst: Annotated[str, typer.Option("--analyst")] = "",
        store: Annotated[
            Path | None,
            typer.Option("--store", help="SQLite store (default: $DETECTOR_DISPOSITIONS or state/)."),
        ] = None,
        alerts: Annotated[
            Path | None, typer.Option("--alerts", help="Alerts JSON Lines holding the alert (for proposals).")
        ] = None,
        allowlist: Annotated[Path | None, typer.Option("--allowlist", help="The allow-list to diff.")] = None,
        write_allowlist: Annotated[
            bool, typer.Option("--write-allowlist", help="Apply the proposed entries to --allowlist.")
        ] = False,
        decisions: Annotated[
            Path | None,
            typer.Option("--decisions", help="Decisions JSON Lines: a false positive appends its lifts."),
        ] = None,
    ) -> None:
        """Record an analyst's verdict on an alert; a false positive withdraws its decisions and proposes
        allow-list entries (printed as a diff)."""
        import orjson
        from pydantic import ValidationError

        from detector.decide import DecisionBook, load_policy
        from detector.decide.dispositions import (
            Disposition,
            DispositionStore,
            allowlist_diff,
            proposed_entries,
        )

        try:
            d = Disposition.model_validate(
                {
                    "alert_id": alert_id,
                    "verdict": verdict,
                    "note": note,
                    "analyst": analyst,
                    "at": datetime.now(UTC),
                }
            )
        except ValidationError as exc:
            bad = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            typer.echo(f"bad disposition: {bad}", err=True)
            raise typer.Exit(2) from None
        path = store or Path(os.environ.get("DETECTOR_DISPOSITIONS") or DEFAULT_STORE)
        db = DispositionStore(path)
        seq = db.add(d)
        db.close()
        typer.echo(f"recorded disposition #{seq}: {alert_id} {verdict} in {path}")
        if d.verdict != "false_positive":
            return
        if decisions is not None and decisions.exists():
            records = [orjson.loads(x) for x in decisions.read_bytes().splitlines() if x.strip()]
            book = DecisionBook(load_policy())
            now = book.load_records(records)
            lifts = book.withdraw(alert_id, now) if now is not None else []
            with decisions.open("ab") as fh:
                for lift in lifts:
                    fh.write(orjson.dumps(lift.to_json_dict()) + b"\n")
            typer.echo(f"withdrew {len(lifts)} decisions of {alert_id} (lifts appended to {decisions})")
        if alerts is None:
            return
        record = None
        for line in alerts.read_bytes().splitlines():
            if line.strip() and (r := orjson.loads(line)).get("alert_id") == alert_id:
                record = r  # the latest revision wins
        if record is None:
            typer.echo(f"{alert_id} not found in {alerts}: no allow-list proposal", err=True)
            return
        diff, new_text = allowlist_diff(allowlist, proposed_entries(record, d))
        typer.echo(diff or "allow-list already covers this alert")
        if write_allowlist and allowlist is not None and diff:
            allowlist.write_text(new_text, encoding="utf-8")
            typer.echo(f"wrote {allowlist}")
