"""Mistakes a user makes, fed to the real ``detector`` command (a subprocess, as a user runs it): each
ends with the documented exit code (docs/cli.md) and exactly one stderr line that names the culprit,
never a traceback."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from detector.lab.simulate import simulate

REPO = Path(__file__).resolve().parents[1]
BROKEN_RULES = REPO / "tests" / "data" / "rules_broken"
BAD_INTEL = REPO / "tests" / "data" / "ipintel" / "bad"
CLI = Path(sys.executable).with_name("detector")


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, metrics_off: bool = True
) -> subprocess.CompletedProcess[str]:
    """``detector ARGS`` in ``cwd`` with a clean environment (no inherited ``DETECTOR_*``); the metrics
    server off unless ``metrics_off`` is False (the default port, 9108, may be taken on this machine)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    if metrics_off:
        base["DETECTOR_STREAM_METRICS_PORT"] = "0"
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of good and bad inputs."""
    d = tmp_path_factory.mktemp("cli-mistakes")
    simulate(d / "sim", days=0.1, seed=3, scale=0.05)
    events = pl.read_parquet(d / "sim" / "events.parquet")
    events.head(0).write_parquet(d / "empty.parquet")
    events.head(30).with_columns(pl.lit(7).alias("account")).write_parquet(d / "wrong_type.parquet")
    events.head(30).with_columns(pl.lit(5).alias("ts")).write_parquet(d / "ts_int.parquet")
    (d / "zero.parquet").write_bytes(b"")
    (d / "text.parquet").write_text("not parquet\n")
    data = gzip.compress((d / "sim" / "events.jsonl").read_bytes())
    (d / "truncated.jsonl.gz").write_bytes(data[: len(data) // 2])
    (d / "garbage.jsonl").write_text('not json\n{"a": 1}\n[1, 2]\n')
    (d / "no_inputs").mkdir()
    (d / "date.yaml").write_text("- {type: account, value: a1, reason: eval team, expires: 2026-12-31}\n")
    (d / "bad_entries.yaml").write_text(
        "- {type: card, value: a, reason: r}\n"
        "- {type: account, value: b, reason: ok}\n"
        "- {type: account, value: c}\n"
        "- {type: account, value: d, reason: r, expires: 2026-12-31T10:00:00}\n"
    )
    (d / "mapping.yaml").write_text("account: a1\n")
    (d / "broken.yaml").write_text("- {type: account, value: [\n")
    (d / "bad.env").write_text("DETECTOR_WINDOWS__TICK=soon\n")
    (d / "labels_broken.json").write_text("{")
    (d / "alerts.jsonl").write_text("")
    return d


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port something is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Case:
    """One mistake: arguments (``{w}`` is the work folder, ``{port}`` a busy port), environment, the exit
    code and the words the one stderr line must hold."""

    args: str
    code: int
    names: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


REPLAY = "replay {w}/sim/events.parquet --alerts-out {w}/out.jsonl"
CASES: dict[str, Case] = {
    # the table
    "tick_banana": Case(
        REPLAY, 2, ("DETECTOR_WINDOWS__TICK", "banana"), {"DETECTOR_WINDOWS__TICK": "banana"}
    ),
    "broken_rule": Case(REPLAY + f" --rules {BROKEN_RULES}", 2, ("bad_severity.yaml:4", "urgent")),
    "bad_allowlist_all_entries": Case(
        REPLAY + " --allowlist {w}/bad_entries.yaml", 2, ("bad_entries.yaml", "entry 1", "entry 3", "entry 4")
    ),
    "missing_allowlist": Case(REPLAY + " --allowlist {w}/nope.yaml", 2, ("nope.yaml", "not found")),
    "empty_parquet": Case(
        "replay {w}/empty.parquet --alerts-out {w}/out.jsonl", 5, ("empty.parquet", "no events")
    ),
    "wrong_column_type": Case(
        "replay {w}/wrong_type.parquet --alerts-out {w}/out.jsonl", 5, ("wrong_type.parquet", "type_error")
    ),
    "simulate_days_0": Case("simulate --out {w}/s0 --days 0", 2, ("--days",)),
    "metrics_port_in_use": Case(
        "run --metrics-port {port}",
        2,
        ("{port}", "in use"),
        {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    ),
    "truncated_gz": Case(
        "replay {w}/truncated.jsonl.gz --alerts-out {w}/out.jsonl", 5, ("truncated.jsonl.gz", "unreadable")
    ),
    "out_of_range_min_overlap": Case(
        REPLAY, 2, ("DETECTOR_LINK__MIN_OVERLAP", "1"), {"DETECTOR_LINK__MIN_OVERLAP": "2"}
    ),
    "all_rejected": Case(
        "replay {w}/garbage.jsonl --alerts-out {w}/out.jsonl", 5, ("garbage.jsonl", "no events", "not_json")
    ),
    # more mistakes
    "tick_zero": Case(REPLAY, 2, ("DETECTOR_WINDOWS__TICK", "greater than"), {"DETECTOR_WINDOWS__TICK": "0"}),
    "cluster_every_below_tick": Case(
        REPLAY, 2, ("DETECTOR_WINDOWS", "cluster_every"), {"DETECTOR_WINDOWS__CLUSTER_EVERY": "60"}
    ),
    "dedup_below_long": Case(REPLAY, 2, ("DETECTOR_WINDOWS", "dedup"), {"DETECTOR_WINDOWS__DEDUP": "1h"}),
    "zero_byte_parquet": Case("replay {w}/zero.parquet --alerts-out {w}/out.jsonl", 5, ("zero.parquet",)),
    "text_as_parquet": Case("replay {w}/text.parquet --alerts-out {w}/out.jsonl", 5, ("text.parquet",)),
    "ts_of_wrong_type": Case(
        "replay {w}/ts_int.parquet --alerts-out {w}/out.jsonl", 5, ("ts_int.parquet", "no events")
    ),
    "missing_input": Case(
        "replay {w}/nope.jsonl --alerts-out {w}/out.jsonl", 2, ("nope.jsonl", "no such input")
    ),
    "folder_without_inputs": Case("replay {w}/no_inputs --alerts-out {w}/out.jsonl", 2, ("no_inputs",)),
    "missing_rules_folder": Case(REPLAY + " --rules {w}/no_rules", 2, ("no_rules",)),
    "missing_models_folder": Case(REPLAY + " --models {w}/no_models", 2, ("no_models", "models")),
    "missing_ip_intel": Case(REPLAY + " --ip-intel {w}/no_intel", 2, ("no_intel",)),
    "malformed_ip_intel": Case(REPLAY + f" --ip-intel {BAD_INTEL}", 2, ("IP intelligence", "bad")),
    "allowlist_not_a_list": Case(REPLAY + " --allowlist {w}/mapping.yaml", 2, ("mapping.yaml", "list")),
    "allowlist_broken_yaml": Case(REPLAY + " --allowlist {w}/broken.yaml", 2, ("broken.yaml", "YAML")),
    "allowlist_env_missing": Case(REPLAY, 2, ("gone.yaml",), {"DETECTOR_ALLOWLIST": "/gone.yaml"}),
    "unknown_option": Case(REPLAY + " --frobnicate", 2, ("--frobnicate",)),
    "missing_argument": Case("replay", 2, ("paths",)),
    "simulate_negative_scale": Case("simulate --out {w}/s1 --scale -1", 2, ("--scale",)),
    "run_without_bootstrap": Case("run", 2, ("DETECTOR_STREAM_BOOTSTRAP_SERVERS",)),
    "run_bootstrap_without_port": Case(
        "run", 2, ("localhost", "host:port"), {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": "localhost"}
    ),
    "metrics_port_not_a_number": Case(
        "run",
        2,
        ("DETECTOR_STREAM_METRICS_PORT", "abc"),
        {"DETECTOR_STREAM_METRICS_PORT": "abc", "DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    ),
    "metrics_port_out_of_range": Case(
        "run --metrics-port 70000", 2, ("70000",), {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    ),
    "security_protocol_unknown": Case(
        "run",
        2,
        ("DETECTOR_STREAM_SECURITY_PROTOCOL", "TLS"),
        {"DETECTOR_STREAM_SECURITY_PROTOCOL": "TLS", "DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    ),
    "run_with_a_broken_rule": Case(
        f"run --rules {BROKEN_RULES}",
        2,
        ("bad_severity.yaml",),
        {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    ),
    "demo_with_a_bad_allowlist": Case(
        "demo --allowlist {w}/bad_entries.yaml", 2, ("bad_entries.yaml", "entry 4")
    ),
    "missing_config_file": Case("run --config {w}/nope.env", 2, ("nope.env", "config")),
    "bad_value_in_config_file": Case(
        "run --config {w}/bad.env",
        2,
        ("DETECTOR_WINDOWS__TICK", "soon"),
        {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    ),
    "evaluate_missing_labels": Case(
        "evaluate --labels {w}/nope.json --alerts {w}/alerts.jsonl", 2, ("nope.json",)
    ),
    "evaluate_broken_labels": Case(
        "evaluate --labels {w}/labels_broken.json --alerts {w}/alerts.jsonl", 5, ("labels_broken.json",)
    ),
    "report_missing_alerts": Case("report --alerts {w}/nope.jsonl --out {w}/r.html", 2, ("nope.jsonl",)),
    "models_check_missing_folder": Case("models check --models {w}/no_models", 2, ("no_models",)),
}


def _format(text: str, w: Path, port: int) -> str:
    return text.replace("{w}", str(w)).replace("{port}", str(port))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_mistake_ends_in_one_line_naming_the_culprit(name: str, work: Path, busy_port: int) -> None:
    case = CASES[name]
    args = _format(case.args, work, busy_port).split()
    env = {k: _format(v, work, busy_port) for k, v in case.env.items()}
    got = run_cli(args, work, env)
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == case.code, (name, got.returncode, got.stderr[-2000:])
    assert len(lines) == 1, (name, got.stderr[-2000:])
    assert "Traceback" not in got.stderr and lines[0].startswith("detector: error: "), lines
    for word in case.names:
        assert _format(word, work, busy_port) in lines[0], (name, word, lines[0])


def test_kafka_where_nothing_listens_fails_fast_naming_the_address(tmp_path: Path) -> None:
    """Not a KafkaTimeoutError after 30 s: a TCP probe, then one line with the address, exit 6."""
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    got = run_cli(["run"], tmp_path, {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": address})
    assert time.monotonic() - t0 < 20
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 6 and len(lines) == 1 and address in lines[0], got.stderr


def test_the_default_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    """``detector run`` serves metrics on 9108 by default; held (here, or by anything else), it is one
    line naming the port, exit 2, before any broker is contacted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", 9108))
            s.listen()
        except OSError:
            pass  # taken already: the same mistake
        env = {"DETECTOR_STREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
        got = run_cli(["run"], tmp_path, env, metrics_off=False)
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 2 and len(lines) == 1, got.stderr
    assert "127.0.0.1:9108" in lines[0] and "port 9108" in lines[0], lines


def test_a_typo_in_a_variable_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    got = run_cli(["rules", "check"], tmp_path, {"DETECTOR_WINDOWS__TICKK": "600"})
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 0, got.stderr
    assert lines == [
        "detector: warning: unknown variable DETECTOR_WINDOWS__TICKK is ignored; "
        "did you mean DETECTOR_WINDOWS__TICK?"
    ]


def test_an_allowlist_date_without_zone_means_the_end_of_that_day_utc(work: Path, tmp_path: Path) -> None:
    from detector.detect.allowlist import AllowList

    got = run_cli(_format(REPLAY + " --allowlist {w}/date.yaml --json", work, 0).split(), tmp_path)
    assert got.returncode == 0 and got.stderr == "", got.stderr
    entry = AllowList.load(work / "date.yaml").entries[0]
    allow = AllowList(entries=[entry])
    assert allow.live(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not allow.live(datetime(2027, 1, 1, tzinfo=UTC))


def test_every_case_of_the_table_is_here() -> None:
    """The issue names 14 mistakes (one, the Parquet shape, belongs to the decoder); 15 more at least."""
    assert len(CASES) >= 11 + 15 + 1


def test_the_version_is_printed(tmp_path: Path) -> None:
    from detector import __version__

    got = run_cli(["--version"], tmp_path)
    assert got.returncode == 0 and got.stdout.strip() == f"detector {__version__}"


def test_the_stage_variable_is_known_and_a_bad_stage_is_one_line_naming_it(tmp_path: Path) -> None:
    """``DETECTOR_STAGE`` (a setting read under its own name, not ``DETECTOR_STREAM_STAGE``) draws no
    "unknown variable" warning, and a bad value names the variable an operator set."""
    from detector.cli.errors import known_variables, unknown_variables

    assert "DETECTOR_STAGE" in known_variables() and not unknown_variables(["DETECTOR_STAGE"])
    assert "DETECTOR_STREAM_STAGE" not in known_variables()  # setting it does nothing: a warning says so
    got = run_cli(["run"], tmp_path, {"DETECTOR_STAGE": "acount"})
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 2 and len(lines) == 1, got.stderr
    assert lines[0].startswith("detector: error: invalid setting: DETECTOR_STAGE='acount':"), lines
