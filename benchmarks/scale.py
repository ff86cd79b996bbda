"""Issue 13's scale gates on today's engine: big days, shuffled JSON Lines, a 25,000-account campaign.

Inputs are built cheaply and reproducibly from the simulator:

- ``--copies K``: one simulated day (``--days``, ``--scale``, ``--seed``; the "1-day file") tiled into
  K copies of its world. Copy k (k >= 1) gets its own request, account, org, API key, card, reseller,
  client build (TLS fingerprint) and system-prompt ids (suffix ``-tk``); event times, IP addresses and
  prompt content are kept, so the copies' campaigns share proxy pools and templates (one campaign K
  times larger) and honest users share addresses K times more. The tile is written time-ordered as
  Parquet and, with ``--jsonl``, as JSON Lines shuffled within 5-minute windows. Tiling costs a polars
  pass per window, where simulating K times the population costs K times the simulator's memory.
- ``--campaign``: the simulator with one ``cot_hydra`` farm of ``--farm`` accounts at
  ``--farm-rate`` requests per account per day (the newest disclosure: 25,000 accounts, ~26 a day),
  hidden among ``--honest`` honest accounts (casual users, university NATs, company cards and
  resellers in the simulator's default proportions), for ``--campaign-days``.

Every replay runs in a child process (this script's ``child`` mode: the engine ``detector replay``
builds, fed by the same ``replay`` function), with a wall-clock cap (``--cap``): a capped run reports
the part it finished. Per run: events/s and CPU µs per event over the replay itself, peak RSS of the
child (``os.wait4``), and state bytes per tracked account at the end (``--state-breakdown``: per table
and column). The campaign is scored with
``detector evaluate`` (recall at medium and above; honest accounts flagged). Prints one JSON line per
run and a JSON summary last::

    .venv/bin/python benchmarks/scale.py --work out/scale --copies 12 --jsonl --cap 900
    .venv/bin/python benchmarks/scale.py --work out/scale --campaign --honest 200000 --farm 25000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = Path(sys.executable).with_name("detector")
#: Fields that name an account, its organisation, its keys or its infrastructure (renamed per copy).
TOP_IDS = ("request_id", "account_id", "org_id", "api_key_id")
NESTED_IDS = {
    "account": ("payment_fingerprint", "reseller_id"),
    "client": ("tls_fingerprint",),
    "params": ("system_prompt_hash",),
}
#: Seconds between two progress records of a child (what a capped run reports).
PROGRESS_EVERY_S = 3.0


# ---------------------------------------------------------------------------------------------------
# Inputs


def simulate_day(out: Path, days: float, scale: float, seed: int) -> Path:
    """The base file: ``detector simulate`` (time-ordered Parquet)."""
    from detector.lab.simulate import simulate

    if not (out / "events.parquet").exists():
        simulate(out, days=days, seed=seed, scale=scale)
    return out / "events.parquet"


def copy_of(frame: pl.DataFrame, k: int) -> pl.DataFrame:
    """Copy ``k`` of the world: every identifier suffixed ``-tk`` (copy 0 is the original)."""
    if k == 0:
        return frame
    s = f"-t{k}"
    nested = [
        pl.col(parent).struct.with_fields(*[pl.field(f) + s for f in fields])
        for parent, fields in NESTED_IDS.items()
    ]
    return frame.with_columns(*[pl.col(c) + s for c in TOP_IDS], *nested)


def tile(base: Path, copies: int, parquet: Path, jsonl: Path | None, seed: int = 7) -> int:
    """Write ``copies`` copies of ``base``: time-ordered Parquet and (optionally) JSON Lines shuffled
    within 5-minute windows. Works one window at a time, so memory holds one window's copies."""
    import pyarrow.parquet as pq

    frame = pl.read_parquet(base).with_columns(
        pl.col("ts").str.to_datetime(time_zone="UTC").dt.truncate("5m").alias("_w")
    )
    writer: pq.ParquetWriter | None = None
    rows = 0
    with open(jsonl, "wb") if jsonl else open(os.devnull, "wb") as text:
        for i, ((_w,), part) in enumerate(frame.group_by("_w", maintain_order=True)):
            many = pl.concat([copy_of(part.drop("_w"), k) for k in range(copies)])
            ordered = many.sort("ts", maintain_order=True)
            table = ordered.to_arrow()
            writer = writer or pq.ParquetWriter(parquet, table.schema, compression="zstd")
            writer.write_table(table)
            if jsonl:
                many.sample(fraction=1.0, shuffle=True, seed=seed + i).write_ndjson(text)
            rows += many.height
    if writer is not None:
        writer.close()
    return rows


def simulate_campaign(out: Path, honest: int, farm: int, rate: float, days: float, seed: int) -> Path:
    """One cot_hydra farm among honest accounts; writes events.parquet and labels.json."""
    from detector.lab.simulate import SimParams, simulate
    from detector.lab.simulate.params import FamilyParams

    if (out / "events.parquet").exists():
        return out
    d = SimParams()
    mix = {  # the simulator's light honest personas, in their default proportions
        "casual": d.casual,
        "university_nat": d.university_nat,
        "company_card": d.company_card,
        "legit_reseller": d.legit_reseller,
    }
    total = sum(p.accounts for p in mix.values())
    honest_params = {
        n: p.model_copy(update={"accounts": round(honest * p.accounts / total)}) for n, p in mix.items()
    }
    off = {
        n: getattr(d, n).model_copy(update={"accounts": 0})
        for n in ("app_backend", "eval_harness", "bulk_synthetic", "agentic_coder")
    }
    families = {
        n: getattr(d, n).model_copy(update={"campaigns": 0})
        for n in ("agentic_pivot", "multilingual_coercion", "low_and_slow", "logprob_harvest")
    }
    hydra: FamilyParams = d.cot_hydra.model_copy(
        update={
            "campaigns": 1,
            "cluster_size": farm,
            "requests_per_account_day": rate,
            "start_offsets": [0.05],
        }
    )
    params = d.model_copy(update={**honest_params, **off, **families, "cot_hydra": hydra})
    simulate(out, days=days, seed=seed, scale=1.0, params=params)
    return out


# ---------------------------------------------------------------------------------------------------
# One replay in a child process


def child(args: argparse.Namespace) -> None:
    """Replay ``args.input`` with the engine ``detector replay`` builds; write progress to a file."""
    from detector.app import build_engine
    from detector.runtime.replay import replay

    engine = build_engine(None, None, None, not args.no_models)
    progress = Path(args.progress)
    stages = _stage_sampler(engine) if args.stages else None
    t0, c0 = time.perf_counter(), _cpu()

    timeline: list[list[float]] = []  # [wall s, events, hours of event time done, RSS MB]
    page = os.sysconf("SC_PAGE_SIZE")

    def record(final: bool) -> dict[str, Any]:
        sizes = engine.state.size_bytes()
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * page >> 20
        done_h = (
            (engine.clock.last_closed - engine.state.stream_start).total_seconds() / 3600
            if engine.clock.last_closed and engine.state.stream_start
            else 0.0
        )
        timeline.append([round(time.perf_counter() - t0, 1), engine.stats.events, round(done_h, 2), rss])
        tracked = engine.state.accounts.height
        return {
            "final": final,
            "wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(_cpu() - c0, 2),
            "events": engine.stats.events,
            "tracked_accounts": tracked,
            "state_mb": {t: round(b / 2**20, 2) for t, b in sizes.items()},
            "state_bytes_per_account": round(sum(sizes.values()) / tracked) if tracked else None,
            "event_time": engine.clock.last_closed.isoformat() if engine.clock.last_closed else None,
            "rss_timeline": timeline,
            **({"peak_rss_mb_by_stage": dict(sorted(stages.items()))} if stages is not None else {}),
            **({"state_breakdown": _breakdown(engine.state)} if final and args.state_breakdown else {}),
        }

    def write(rec: dict[str, Any]) -> None:
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(progress)

    done = threading.Event()

    def tick() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            write(record(False))

    threading.Thread(target=tick, daemon=True).start()
    summary = replay([Path(args.input)], engine, Path(args.alerts))
    done.set()
    rec = record(True)
    rec["alert_records"] = summary.revisions
    rec["rejects"] = sum(summary.rejects.values())
    write(rec)


def _breakdown(state: Any) -> dict[str, Any]:
    from detector.lab.bench.replay import state_breakdown

    return state_breakdown(state)


def _stage_sampler(engine: Any) -> dict[str, int]:
    """Which engine stage was running when the process's RSS peaked: the largest RSS (MB) seen every
    20 ms while each stage ran (the innermost stage; ``other``: none of them, e.g. the replay's
    reader thread decoding while the engine waits), and as ``STAGE+`` the most RSS rose over the
    stage's own start (what its working set adds, nested stages included)."""
    import detector.engine as eng

    page = os.sysconf("SC_PAGE_SIZE")

    def rss_mb() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page >> 20

    current: list[tuple[str, int]] = [("other", 0)]
    peaks: dict[str, int] = {}

    def wrap(owner: Any, name: str) -> None:
        inner = getattr(owner, name)
        label = name.strip("_")

        def staged(*a: Any, **k: Any) -> Any:
            current.append((label, rss_mb()))
            try:
                return inner(*a, **k)
            finally:
                current.pop()

        setattr(owner, name, staged)

    for name in STAGES_MODULE:
        wrap(eng, name)
    for name in ("_account_verdicts", "_cluster_verdicts", "_close_ticks", "_evaluate"):
        wrap(engine, name)
    for name in ("add", "drop_seen", "mark_new_models", "evict"):
        wrap(engine.state, name)

    def sample() -> None:
        while True:
            rss = rss_mb()
            for stage, start in list(current)[1:]:
                peaks[stage + "+"] = max(peaks.get(stage + "+", 0), rss - start)
            stage = current[-1][0]
            peaks[stage] = max(peaks.get(stage, 0), rss)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    return peaks


#: The engine module's stages the sampler times (names it imports; ``--stages``).
STAGES_MODULE = (
    "build_clusters",
    "cluster_features",
    "account_features_in_parts",
    "population_sheets",
    "with_sheets",
    "add_axes",
    "spare_rooms",
    "spare_sheets",
    "book_changes",
    "new_model_flags",
    "with_cluster_samples",
    "accused",
)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(
    path: Path,
    alerts: Path,
    models: bool,
    cap: float,
    rss_cap_mb: int,
    stages: bool = False,
    breakdown: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One child replay, capped at ``cap`` seconds of wall time and ``rss_cap_mb`` of resident memory
    (the machine is shared); its figures (partial if capped). ``env``: variables added to the child's
    environment (read at its start: the allocator's ``_RJEM_MALLOC_CONF``, ``DETECTOR_*`` settings)."""
    progress = alerts.with_suffix(".progress.json")
    progress.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "child", str(path), str(alerts), str(progress)]
    flags = [
        *([] if models else ["--no-models"]),
        *(["--stages"] if stages else []),
        *(["--state-breakdown"] if breakdown else []),
    ]
    proc = subprocess.Popen([*cmd, *flags], env={**os.environ, **(env or {})})  # noqa: S603 (this script)
    start, capped, page = time.monotonic(), "", os.sysconf("SC_PAGE_SIZE")
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError):
            rss_mb = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1]) * page >> 20
            if not capped and rss_mb > rss_cap_mb:
                capped = f"rss over {rss_cap_mb} MB"
        if not capped and time.monotonic() - start > cap:
            capped = f"wall over {cap:g} s"
        if capped and proc.returncode is None:
            proc.returncode = -9
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, by wait4
    rec: dict[str, Any] = json.loads(progress.read_text()) if progress.exists() else {"events": 0}
    events, wall, cpu = rec["events"], rec.get("wall_s") or 0.0, rec.get("cpu_s") or 0.0
    complete = bool(rec.get("final")) and proc.returncode == 0
    digest = hashlib.sha256(alerts.read_bytes()).hexdigest() if complete and alerts.exists() else None
    return {
        "input": str(path),
        "env": env or {},
        "models": models,
        "complete": complete,
        "alerts_sha256": digest,
        "capped": capped or None,
        "exit": proc.returncode,
        "events": events,
        "replay_wall_s": wall,
        "events_per_s": round(events / wall) if wall else None,
        "cpu_us_per_event": round(cpu / events * 1e6, 1) if events else None,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        # the child's RSS after the replay returned (its last sample: the engine alive, the reader done)
        "rss_end_mb": rec["rss_timeline"][-1][3] if complete and rec.get("rss_timeline") else None,
        **{
            k: rec.get(k)
            for k in (
                "tracked_accounts",
                "state_bytes_per_account",
                "state_mb",
                "event_time",
                "peak_rss_mb_by_stage",
                "state_breakdown",
                "rss_timeline",
            )
        },
    }


def evaluate(labels: Path, alerts: Path) -> dict[str, Any]:
    """``detector evaluate --json``: recall at medium per campaign, honest accounts flagged."""
    done = subprocess.run(  # noqa: S603 (our own CLI)
        [str(DETECTOR), "evaluate", "--labels", str(labels), "--alerts", str(alerts), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    out: dict[str, Any] = json.loads(done.stdout)
    return out


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode")
    c = sub.add_parser("child", help="(internal) one replay")
    c.add_argument("input")
    c.add_argument("alerts")
    c.add_argument("progress")
    c.add_argument("--no-models", action="store_true")
    c.add_argument("--stages", action="store_true")
    c.add_argument("--state-breakdown", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("out/scale"))
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--copies", type=int, default=0, help="Tile the day into this many copies (0: no tile).")
    ap.add_argument("--jsonl", action="store_true", help="Also replay the tile as shuffled JSON Lines.")
    ap.add_argument("--models", action="store_true", help="Also replay each Parquet input with models.")
    ap.add_argument("--campaign", action="store_true")
    ap.add_argument("--honest", type=int, default=200_000)
    ap.add_argument("--farm", type=int, default=25_000)
    ap.add_argument("--farm-rate", type=float, default=26.0)
    ap.add_argument("--campaign-days", type=float, default=1.0)
    ap.add_argument("--cap", type=float, default=900.0, help="Wall-clock seconds per replay.")
    ap.add_argument("--rss-cap-mb", type=int, default=6000, help="Stop a replay past this resident memory.")
    ap.add_argument("--stages", action="store_true", help="Sample which engine stage holds the peak RSS.")
    ap.add_argument(
        "--child-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A variable for every child replay (_RJEM_MALLOC_CONF=..., DETECTOR_FEATURE_BATCH_POINTS=...).",
    )
    ap.add_argument(
        "--ab",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE[;NAME=VALUE]",
        help="With --copies: replay only the tile, once per variant and round, variants alternating "
        "(a bare LABEL: the environment as it is); prints peak RSS and CPU per event per variant.",
    )
    ap.add_argument("--rounds", type=int, default=2, help="Rounds of --ab.")
    ap.add_argument(
        "--state-breakdown", action="store_true", help="Bytes per account of every state table and column."
    )
    args = ap.parse_args()
    if args.mode == "child":
        child(args)
        return
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []

    common = env_pairs(args.child_env)

    def run(path: Path, name: str, models: bool, env: dict[str, str] | None = None) -> dict[str, Any]:
        alerts = work / f"{name}{'-models' if models else ''}.alerts.jsonl"
        env = {**common, **(env or {})}
        r = measure(path, alerts, models, args.cap, args.rss_cap_mb, args.stages, args.state_breakdown, env)
        print(json.dumps({k: v for k, v in r.items() if k != "rss_timeline"}), flush=True)
        runs.append(r)
        return r

    summary: dict[str, Any] = {}
    if args.copies:
        day = simulate_day(work / f"day-s{args.scale:g}-seed{args.seed}", args.days, args.scale, args.seed)
        big, text = work / f"tile{args.copies}.parquet", work / f"tile{args.copies}.jsonl"
        t = time.perf_counter()
        if big.exists() and (text.exists() or not args.jsonl):  # built by an earlier run
            rows = pl.scan_parquet(big).select(pl.len()).collect().item()
        else:
            rows = tile(day, args.copies, big, text if args.jsonl else None)
        summary["tile"] = {
            "copies": args.copies,
            "events": rows,
            "build_s": round(time.perf_counter() - t, 1),
        }
        if args.ab:
            summary["ab"] = alternate(big, [variant(v) for v in args.ab], args.rounds, run)
            print(json.dumps(summary, indent=2))
            return
        one, many = run(day, "day", False), run(big, f"tile{args.copies}", False)
        if one["events_per_s"] and many["events_per_s"]:
            summary["tile_vs_day_events_per_s"] = round(many["events_per_s"] / one["events_per_s"], 3)
        if args.jsonl:
            run(text, f"tile{args.copies}-jsonl", False)
        if args.models:
            run(day, "day", True)
            run(big, f"tile{args.copies}", True)
    if args.campaign:
        folder = work / f"campaign-h{args.honest}-f{args.farm}-d{args.campaign_days:g}"
        t = time.perf_counter()
        simulate_campaign(folder, args.honest, args.farm, args.farm_rate, args.campaign_days, args.seed)
        summary["campaign_build_s"] = round(time.perf_counter() - t, 1)
        for models in (False, True) if args.models else (False,):
            r = run(folder / "events.parquet", folder.name, models)
            if r["complete"]:
                alerts = work / f"{folder.name}{'-models' if models else ''}.alerts.jsonl"
                summary[f"campaign{'_models' if models else ''}_eval"] = _brief(
                    evaluate(folder / "labels.json", alerts)
                )
    summary["runs"] = runs
    print(json.dumps(summary, indent=2))


def env_pairs(items: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` items as a dict (the value may hold ``=``, ``,`` and ``:``)."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise SystemExit(f"scale.py: expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def variant(spec: str) -> tuple[str, dict[str, str]]:
    """``LABEL:NAME=VALUE;NAME=VALUE`` as (label, environment); ``LABEL:`` or ``LABEL`` is no change."""
    label, _, rest = spec.partition(":")
    return label, env_pairs([p for p in rest.split(";") if p])


def alternate(
    path: Path, variants: list[tuple[str, dict[str, str]]], rounds: int, run: Any
) -> dict[str, dict[str, Any]]:
    """Replay ``path`` once per variant per round, variants in turn (a slow spell of the shared machine
    falls on all of them); per variant its peak RSS, CPU per event and alerts' sha256 in run order."""
    out: dict[str, dict[str, Any]] = {
        label: {"env": env, "peak_rss_mb": [], "rss_end_mb": [], "cpu_us_per_event": [], "alerts_sha256": []}
        for label, env in variants
    }
    for i in range(rounds):
        for label, env in variants if i % 2 == 0 else variants[::-1]:
            r = run(path, f"{path.stem}-{label}", False, env)
            for key in ("peak_rss_mb", "rss_end_mb", "cpu_us_per_event", "alerts_sha256"):
                out[label][key].append(r[key])
            out[label]["tracked_accounts"] = r["tracked_accounts"]
    return out


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """Recall at medium per campaign and honest accounts flagged, from ``detector evaluate --json``."""
    keep = ("campaign_id", "n_accounts", "n_detected", "recall", "ttd_hours", "median_account_ttd_hours")
    return {
        "campaigns": [{k: c[k] for k in keep} for c in result["campaigns"]],
        "honest_accounts": sum(p["n_accounts"] for p in result["personas"]),
        "honest_flagged_medium": sum(p["flagged_medium"] for p in result["personas"]),
        "honest_flagged_high": sum(p["flagged_high"] for p in result["personas"]),
    }


if __name__ == "__main__":
    main()
