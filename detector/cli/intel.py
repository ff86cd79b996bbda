"""``detector intel export | import``: registered on the main command line by ``register``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``intel`` command group to ``app``."""
    intel_app = typer.Typer(no_args_is_help=True, help="Share campaign indicators (STIX 2.1) with partners.")
    app.add_typer(intel_app, name="intel")

    @intel_app.command("export")
    def export(
        alerts: Annotated[Path, typer.Option("--alerts", help="Alerts JSON Lines.")],
        dispositions: Annotated[
            Path, typer.Option("--dispositions", help="Disposition store: clusters analysts confirmed.")
        ],
        out: Annotated[Path, typer.Option("--out", help="The STIX 2.1 bundle to write.")],
        provider: Annotated[str, typer.Option("--provider", help="Our name in the bundle.")] = "provider",
        tlp: Annotated[str, typer.Option("--tlp", help="clear | green | amber | red")] = "amber",
        key_file: Annotated[
            Path | None, typer.Option("--key-file", help="Community key file (else $DETECTOR_COMMUNITY_KEY).")
        ] = None,
    ) -> None:
        """Write an indicator per confirmed cluster (its shared artefacts, keyed-hashed), validated."""
        from detector.decide.dispositions import DispositionStore
        from detector.intel.hashing import community_key
        from detector.intel.stix import TLP, IntelError, export_bundle

        if tlp not in TLP:
            typer.echo(f"--tlp must be one of {', '.join(TLP)}", err=True)
            raise typer.Exit(2)
        try:
            key = community_key(file=key_file)
        except (ValueError, OSError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        store = DispositionStore(dispositions)
        confirmed = {a for a, d in store.latest().items() if d.verdict == "confirm"}
        store.close()
        try:
            text, n = export_bundle(alerts, confirmed, key, provider, tlp)
        except IntelError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(
            f"wrote {out}: {n} indicators from {len(confirmed)} confirmed alerts (TLP {tlp}), validated"
        )

    @intel_app.command("import")
    def import_(
        bundle: Annotated[Path, typer.Argument(help="A partner's STIX 2.1 bundle.")],
        directory: Annotated[
            Path, typer.Option("--dir", help="Where partner bundles live (replay --partner-intel DIR).")
        ] = Path("intel/partners"),
        key_file: Annotated[Path | None, typer.Option("--key-file")] = None,
    ) -> None:
        """Validate a partner bundle and add it to the partner-intel folder (the ``shared_intel`` family)."""
        from detector.intel.hashing import community_key
        from detector.intel.stix import IntelError, load_partner

        try:
            index = load_partner([bundle], community_key(file=key_file))
        except (IntelError, ValueError, OSError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, directory / bundle.name)
        typer.echo(
            f"imported {bundle.name}: {len(set(index.hashes.values()))} indicators, {len(index)} artefact "
            f"hashes -> {directory}"
        )
