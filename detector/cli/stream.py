"""Typer commands ``detector run`` (the daemon) and ``detector demo``; heavy imports stay inside them."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from detector.errors import ConfigError, ServiceError

#: Seconds to wait for a TCP connection to a bootstrap server before `detector run` gives up on it.
CONNECT_TIMEOUT_S = 5.0


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (the daemon finishes its batch, commits and leaves the group)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _reload_on_sighup(watcher: Any) -> None:
    """SIGHUP makes the rule watcher's next poll reload (a rule set that does not load is logged and
    counted, and the running rules stay)."""

    def handler(signum: int, frame: object) -> None:
        watcher.request_reload()

    signal.signal(signal.SIGHUP, handler)


def _rule_watcher(rules_dir: Path) -> Any:
    """A ``RuleWatcher`` over the engine's rules folder, reloaded on SIGHUP (``detector demo``)."""
    from detector.detect.rules import RuleWatcher
    from detector.window.features import CATALOGUES

    watcher = RuleWatcher(rules_dir, CATALOGUES)
    _reload_on_sighup(watcher)
    return watcher


def _settings(config: Path | None, metrics_port: int | None, strict_port: bool = True) -> Any:
    """The daemon's settings, read once; the metrics port is checked at start (``strict_port=False``:
    only a port the user chose, as the demo runs without metrics when the default port is taken)."""
    import sys

    from dotenv import dotenv_values

    from detector.cli.errors import unknown_variables
    from detector.runtime.stream.settings import StreamSettings

    if config is not None and not config.is_file():
        raise ConfigError("config file not found; give an existing dotenv-style file", str(config))
    if config is not None:
        for warning in unknown_variables(dotenv_values(config)):
            print(f"detector: warning: {config}: {warning}", file=sys.stderr)
    # read once, environment over the file; nothing is written to the environment
    s = StreamSettings(_env_file=config)  # type: ignore[call-arg]  # (not a field)
    if metrics_port is not None:
        s = s.model_copy(update={"metrics_port": metrics_port})
    if strict_port or "metrics_port" in s.model_fields_set:
        _check_port(s.metrics_host, s.metrics_port)
    return s


def _check_port(host: str, port: int) -> None:
    """Fail at start, naming the port, when the metrics port cannot be bound (in use, or not ours)."""
    if not port:
        return
    if not 0 < port < 65536:
        raise ConfigError("metrics port must be in 1..65535 (0 turns the server off)", f"port {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose another port with "
                "--metrics-port or DETECTOR_STREAM_METRICS_PORT",
                f"port {port}",
            ) from None


def _addresses(bootstrap: str) -> list[tuple[str, str, str]]:
    """``(address, host, port)`` of each comma-separated bootstrap server."""
    out = []
    for address in (a.strip() for a in bootstrap.split(",") if a.strip()):
        host, _, port = address.rpartition(":")
        out.append((address, host, port))
    return out


def _check_address_syntax(bootstrap: str) -> None:
    """Each bootstrap server is ``host:port``."""
    for address, host, port in _addresses(bootstrap):
        if not host or not port.isdigit():
            raise ConfigError(
                "expected host:port in DETECTOR_STREAM_BOOTSTRAP_SERVERS", f"bootstrap server {address!r}"
            )


def _check_brokers(bootstrap: str) -> None:
    """Fail fast, naming the address, when no bootstrap server accepts a TCP connection."""
    problems = []
    for address, host, port in _addresses(bootstrap):
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            problems.append(f"{address} ({exc.strerror or exc})")
    raise ServiceError(
        "no Kafka broker answers at " + ", ".join(problems) + "; check DETECTOR_STREAM_BOOTSTRAP_SERVERS "
        "and that the broker is up",
        "Kafka",
    )


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="dotenv-style file of DETECTOR_* settings (env vars win)."),
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port", help="Serve /metrics, /healthz and /readyz on this port (default 9108; 0: off)."
    ),
]
RulesOpt = Annotated[Path | None, typer.Option("--rules")]
IntelOpt = Annotated[
    Path | None,
    typer.Option(
        "--ip-intel", help="Folder of IP-intelligence files, or `default` for the packaged snapshot."
    ),
]
AllowOpt = Annotated[Path | None, typer.Option("--allowlist")]


def run(
    config: ConfigOpt = None,
    metrics_port: PortOpt = None,
    rules_dir: RulesOpt = None,
    ip_intel: IntelOpt = None,
    allowlist: AllowOpt = None,
    drain: Annotated[
        bool,
        typer.Option(
            "--drain",
            help="Stop once caught up, closing every pending tick (backfills); an account stage stops "
            "once every partition of its group is drained.",
        ),
    ] = False,
    reset_state: Annotated[
        bool,
        typer.Option(
            "--reset-state",
            help="When no checkpoint verifies (or the state is gone while the group has offsets): move "
            "the state directory's contents aside and read the input from the beginning of its "
            "retention. Ignored while a checkpoint verifies (docs/operations.md#state).",
        ),
    ] = False,
) -> None:
    """Run the streaming daemon: consume the input topic, raise alerts, checkpoint, until SIGTERM.

    SIGHUP reloads the rules (window state is kept). Exit codes: 3 a sink failed, 4 fenced by a newer
    owner; neither writes a checkpoint. 7 refused to start: no checkpoint verifies (or none while the
    group has offsets); 8 stopped with its last checkpoint failed.
    """
    from detector.app import build_daemon, build_engine, engine_settings
    from detector.io.sinks import SinkError
    from detector.runtime.stream.commit import Fenced
    from detector.runtime.stream.logs import setup_logging

    s = _settings(config, metrics_port)
    if not s.bootstrap_servers:
        raise ConfigError(
            "not set; give the Kafka bootstrap servers as host:port[,host:port] "
            "(or use `detector demo` for the embedded broker)",
            "DETECTOR_STREAM_BOOTSTRAP_SERVERS",
        )
    _check_address_syntax(s.bootstrap_servers)
    # the engine's settings, read once; a bad variable, rule, allow-list, model or IP-intel file fails
    # here, at start, not at the first partition assignment (the daemon builds its own engine then)
    es = engine_settings(rules_dir, ip_intel, allowlist, config=config)
    build_engine(settings=es)
    _check_brokers(s.bootstrap_servers)
    setup_logging(s.log_level)  # after the start checks, so that a failed start prints one line
    app = build_daemon(s, engine=es, stop=_stop_on_signals(), drain=drain, reset_state=reset_state)
    _reload_on_sighup(app.watcher)
    try:
        app.run()
    except SinkError:
        raise typer.Exit(3) from None
    except Fenced:
        raise typer.Exit(4) from None


def demo(
    config: ConfigOpt = None,
    metrics_port: PortOpt = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run; 0 = until Ctrl-C.")] = 0.0,
    days: Annotated[float, typer.Option("--days", help="Days of simulated traffic.")] = 1.0,
    scale: Annotated[float, typer.Option("--scale", help="Multiplies simulated account counts.")] = 0.5,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    speed: Annotated[
        float, typer.Option("--speed", help="Event-time seconds per wall second (0: as fast as possible).")
    ] = 600.0,
    rules_dir: RulesOpt = None,
    ip_intel: IntelOpt = None,
    allowlist: AllowOpt = None,
    show_leads: Annotated[
        bool,
        typer.Option("--show-leads", help="Also print low-severity leads (model-only hits, weak rules)."),
    ] = False,
) -> None:
    """Embedded broker + live simulated traffic + the daemon; prints alerts as they arrive."""
    from detector.app import build_engine, engine_settings
    from detector.lab.demo.run import run_demo
    from detector.runtime.stream.logs import setup_logging

    s = _settings(config, metrics_port, strict_port=False)
    es = engine_settings(rules_dir, ip_intel, allowlist, config=config)
    build_engine(settings=es)  # a bad rule, allow-list or IP-intel file fails here
    if s.bootstrap_servers:
        _check_address_syntax(s.bootstrap_servers)
        _check_brokers(s.bootstrap_servers)
    setup_logging(s.log_level)
    stop = _stop_on_signals()
    watcher = _rule_watcher(es.rules_dir)
    code = run_demo(
        s,
        days=days,
        scale=scale,
        seed=seed,
        speed=speed,
        duration=duration,
        stop=stop,
        engine_args={"settings": es},
        rules=watcher,
        show_leads=show_leads,
    )
    raise typer.Exit(code)


def bench_stream(
    days: Annotated[float, typer.Option("--days")] = 1.0,
    scale: Annotated[float, typer.Option("--scale")] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    live_seconds: Annotated[float, typer.Option("--live-seconds")] = 20.0,
    speed: Annotated[float, typer.Option("--speed", help="Event-time speed-up of the live phase.")] = 600.0,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="The daemon's Kafka client: kafka-python, confluent (the confluent extra), or both "
            "(kafka-python first; the live phase runs on the first).",
        ),
    ] = "kafka-python",
) -> None:
    """Embedded broker: raw consume rates vs the daemon end to end, and produce-to-alert latency."""
    import json

    from detector.lab.bench.stream import run_stream_bench
    from detector.runtime.stream.logs import setup_logging
    from detector.runtime.stream.source import SourceName

    choices: dict[str, tuple[SourceName, ...]] = {
        "kafka-python": ("kafka-python",),
        "confluent": ("confluent",),
        "both": ("kafka-python", "confluent"),
    }
    if source not in choices:
        raise typer.BadParameter(f"--source: one of {', '.join(choices)}")
    setup_logging("WARNING")
    print(json.dumps(run_stream_bench(days, scale, seed, live_seconds, speed, choices[source]), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``run``, ``demo`` and ``bench-stream`` to the main command line."""
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("bench-stream")(bench_stream)
