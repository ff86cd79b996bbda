"""The composition root: the one place that wires settings, rules, models, IP intelligence and the
allow-list into an engine (``build_engine``), and the engine, rule watcher, metrics, sinks and ops
server into a daemon (``build_daemon``). The CLI and the lab call it; nothing below imports it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from detector.detect.rules import RuleWatcher
    from detector.engine import Engine, Observers
    from detector.enrich.prompt.hashing import TextKey
    from detector.runtime.stream.daemon import Daemon, RunSummary
    from detector.runtime.stream.http import OpsServer
    from detector.runtime.stream.settings import StreamSettings
    from detector.settings import EngineSettings


def engine_settings(
    rules_dir: Path | None = None,
    ip_intel: Path | None = None,
    allowlist: Path | None = None,
    models: Path | bool = True,
    *,
    config: Path | None = None,
    base: EngineSettings | None = None,
) -> EngineSettings:
    """The engine's settings, built once per process and passed down: the environment (``DETECTOR_*``)
    over the ``config`` file (dotenv lines; environment variables win), or ``base`` when given, with
    command-line overrides on top. ``models``: False runs rules only; a path overrides the folder."""
    from detector.defaults import resolve_ip_intel
    from detector.settings import EngineSettings

    # pydantic-settings reads ``_env_file`` (its mypy plugin does not list it among the fields)
    s = base if base is not None else EngineSettings(_env_file=config)  # type: ignore[call-arg]
    updates: dict[str, object] = {}
    if models is False:
        updates["models_dir"] = None
    elif isinstance(models, Path):
        updates["models_dir"] = models
    if rules_dir is not None:
        updates["rules_dir"] = rules_dir
    if ip_intel is not None:
        updates["ip_intel_dir"] = resolve_ip_intel(ip_intel)
    if allowlist is not None:
        updates["allowlist"] = allowlist
    if s.text_key is None and s.text_key_file is not None:  # read once, here; the variable wins
        updates["text_key"] = _read_key_file(s.text_key_file)
    return s.model_copy(update=updates) if updates else s


#: Shortest secret accepted for ``DETECTOR_TEXT_KEY`` (as for the community key).
TEXT_KEY_MIN_BYTES = 16
#: Longest key file read: a key is a line; a bigger file (``/dev/urandom``, a log) is a wrong path.
TEXT_KEY_MAX_BYTES = 4096


def _read_key_file(path: Path) -> SecretStr:
    from pydantic import SecretStr

    try:
        with path.open("rb") as f:  # bounded: a device or a big file is refused, never read whole
            data = f.read(TEXT_KEY_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the text key file ({type(exc).__name__}); fix DETECTOR_TEXT_KEY_FILE", str(path)
        ) from None
    if len(data) > TEXT_KEY_MAX_BYTES:
        raise ConfigError(
            f"the text key file is longer than {TEXT_KEY_MAX_BYTES} bytes; fix DETECTOR_TEXT_KEY_FILE "
            "(the file holds the key alone, on one line)",
            str(path),
        )
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            "the text key file is not UTF-8 text; write the key as text (e.g. `openssl rand -hex 32`)",
            str(path),
        ) from None
    _long_enough(secret.encode(), str(path))  # named here, where the file is known to be the source
    return SecretStr(secret)


def _long_enough(secret: bytes, where: str) -> None:
    """Refuse a text key under ``TEXT_KEY_MIN_BYTES``, naming ``where`` it came from (never the key)."""
    if len(secret) < TEXT_KEY_MIN_BYTES:
        raise ConfigError(
            f"the text key is shorter than {TEXT_KEY_MIN_BYTES} bytes; give a longer secret", where
        )


def text_key(s: EngineSettings) -> TextKey | None:
    """The deployment's secret key on ``text_fp`` from ``s`` (None: unset, public hashes). Raises a
    ``ConfigError`` naming the variable when it is shorter than 16 bytes (never the key); a key read
    from ``text_key_file`` was checked, naming the file, as it was read."""
    from detector.enrich.prompt.hashing import TextKey

    if s.text_key is None:
        return None
    # stripped as a key file is: the same secret, from the variable or a file, is the same key
    raw = s.text_key.get_secret_value().strip().encode()
    _long_enough(raw, "DETECTOR_TEXT_KEY")
    return TextKey(raw)


def build_engine(
    rules_dir: Path | None = None,
    ip_intel: Path | None = None,
    allowlist: Path | None = None,
    models: Path | bool = True,
    partner_intel: Path | None = None,
    community_key_file: Path | None = None,
    *,
    settings: EngineSettings | None = None,
    observers: Observers | None = None,
) -> Engine:
    """An engine from ``settings`` (default: read from the environment now, see ``engine_settings``)
    with command-line overrides.

    ``models``: True (default) loads ``settings.models_dir``; False runs rules only; a path overrides.
    ``partner_intel``: a partner's STIX bundle, or a folder of them (``detector intel import``), matched
    under the community key (``$DETECTOR_COMMUNITY_KEY`` or ``community_key_file``).
    ``ip_intel``: a folder, or ``default`` for the snapshot that ships in the package. Unset folders
    fall back to the packaged defaults (rules, models; no IP intelligence).
    ``observers``: who watches the engine (metrics, training capture).
    """
    from detector.detect.allowlist import AllowList
    from detector.detect.models.runtime import ModelSet
    from detector.detect.rules import load_rules
    from detector.engine import Engine
    from detector.enrich.ipintel import IpIntel
    from detector.window.features import CATALOGUES

    s = engine_settings(rules_dir, ip_intel, allowlist, models, base=settings)
    for what, path in (("models", s.models_dir), ("IP-intelligence", s.ip_intel_dir)):
        if path is not None and not path.is_dir():
            raise ConfigError(f"{what} folder not found; give an existing folder", str(path))
    rules = load_rules(s.rules_dir, CATALOGUES)
    intel = IpIntel.from_dir(s.ip_intel_dir) if s.ip_intel_dir else None
    model_set = (
        ModelSet.load(
            s.models_dir,
            vote_precision=s.model_vote_precision,
            vote_min_accounts=s.model_vote_min_accounts,
            vote_min_artefacts=s.model_vote_min_artefact_families,
        )
        if s.models_dir is not None
        else ModelSet()
    )
    partner = None
    if partner_intel is not None:
        from detector.intel.hashing import community_key
        from detector.intel.stix import load_partner

        bundles = sorted(partner_intel.glob("*.json")) if partner_intel.is_dir() else [partner_intel]
        partner = load_partner(bundles, community_key(file=community_key_file))
    key = text_key(s)
    return Engine(s, rules, intel, AllowList.load(s.allowlist), model_set, partner, observers, key)


@dataclass
class DaemonApp:
    """A wired daemon: the daemon, its rule watcher and its ops server (``/metrics``, probes)."""

    daemon: Daemon
    watcher: RuleWatcher | None
    server: OpsServer | None

    def run(self) -> RunSummary:
        """Serve the ops endpoints while the daemon runs; raises what the daemon raises."""
        if self.server is not None:
            self.server.start()
        try:
            return self.daemon.run()
        finally:
            if self.server is not None:
                self.server.stop()


def build_daemon(
    settings: StreamSettings,
    *,
    engine: EngineSettings | None = None,
    rules_dir: Path | None = None,
    ip_intel: Path | None = None,
    allowlist: Path | None = None,
    stop: threading.Event | None = None,
    drain: bool = False,
    watch_rules: bool = True,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    reset_state: bool = False,
) -> DaemonApp:
    """The streaming daemon from its settings: engine factory, rule watcher, metrics on a fresh
    registry, Kafka outputs, and the ops server when ``settings.metrics_port`` is set.

    ``engine``: the engine's settings, built once by the caller (``engine_settings``; default: read
    from the environment now), with ``rules_dir``, ``ip_intel`` and ``allowlist`` as overrides on top.
    ``watch_rules``: reload the rules when their files change or ``watcher.request_reload()`` is
    called (the CLI calls it on SIGHUP). ``reset_state``: ``detector run --reset-state``.
    """
    from functools import partial

    from prometheus_client import CollectorRegistry

    from detector.checkpoint import refuse_other_text_key
    from detector.detect.rules import RuleWatcher
    from detector.runtime.metrics import Metrics
    from detector.runtime.stream.daemon import Daemon
    from detector.runtime.stream.http import OpsServer
    from detector.runtime.stream.outputs import stream_outputs
    from detector.runtime.stream.stages import check_stage
    from detector.runtime.stream.statecheck import assignment_folders
    from detector.window.features import CATALOGUES

    es = engine_settings(rules_dir, ip_intel, allowlist, base=engine)
    check_stage(settings.stage, es.context_lag, settings.source)  # a split stage needs the lag
    if not reset_state:  # a checkpoint under another text key: refused now, not at the first assignment
        state = settings.for_stage().state_dir  # an account stage's: one folder per assignment
        for root in assignment_folders(state) if settings.stage == "account" else [state]:
            refuse_other_text_key(root, text_key(es))
    watcher = RuleWatcher(es.rules_dir, CATALOGUES) if watch_rules else None
    metrics = Metrics(CollectorRegistry())
    daemon = Daemon(
        settings,
        partial(build_engine, settings=es),
        metrics,
        stop=stop,
        on_alert=on_alert,
        drain_when_idle=drain,
        rules=watcher,
        outputs=lambda: stream_outputs(settings),
        reset_state=reset_state,
    )
    handler, token = _dispositions(settings, daemon.withdraw, metrics.record_disposition)
    server = (
        OpsServer(
            metrics.registry,
            daemon.live,
            daemon.ready,
            settings.metrics_host,
            settings.metrics_port,
            handler,
            token,
        )
        if settings.metrics_port
        else None
    )
    return DaemonApp(daemon, watcher, server)


def _dispositions(
    s: StreamSettings, withdraw: Callable[[str], int], count: Callable[[str], None]
) -> tuple[Callable[[dict[str, Any]], dict[str, Any]] | None, str | None]:
    """The ``POST /dispositions`` handler (counted) and its token, or (None, None) when not configured."""
    from detector.decide.dispositions import DispositionStore, http_handler, read_token

    secret = s.dispositions_token.get_secret_value() if s.dispositions_token else None
    token = read_token(secret, s.dispositions_token_file)
    if s.dispositions_store is None or token is None:
        return None, None
    handle = http_handler(DispositionStore(s.dispositions_store), withdraw)

    def counted(body: dict[str, Any]) -> dict[str, Any]:
        answer = handle(body)
        count(str(answer["verdict"]))
        return answer

    return counted, token
