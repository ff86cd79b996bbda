"""Engine behaviour on simulated traffic: allow-lists, shadow rules, alert episodes, event-time ticks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detector.app import build_engine
from detector.engine import Engine
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1.5, seed=11, scale=0.3)
    return out


@pytest.fixture(scope="module")
def baseline(sim: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    out = tmp_path_factory.mktemp("base") / "a.jsonl"
    replay([sim / "events.parquet"], build_engine(ROOT / "rules"), out)
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_alert_ids_are_stable_and_revisions_increase(baseline: list[dict[str, object]]) -> None:
    by_id: dict[str, list[int]] = {}
    for a in baseline:
        by_id.setdefault(str(a["alert_id"]), []).append(int(a["revision"]))  # type: ignore[call-overload]
    assert by_id
    for revs in by_id.values():
        assert revs == list(range(1, len(revs) + 1))
    subjects = {(a["kind"], a["subject"]): a["alert_id"] for a in baseline}
    assert len(subjects) == len(by_id)  # one episode per subject


def test_cluster_alerts_list_members_and_carry_linkage_evidence(baseline: list[dict[str, object]]) -> None:
    clusters = [a for a in baseline if a["kind"] == "cluster"]
    assert clusters
    for a in clusters:
        ev = a["evidence"]
        assert isinstance(ev, dict)
        assert ev["accounts"] >= 2 and ev["link_families"] >= 1
        assert len(a["account_ids"]) >= 2  # type: ignore[arg-type]


def _replay_allowing_first_accused(
    sim: Path, baseline: list[dict[str, object]], tmp_path: Path, expires: str
) -> tuple[str, list[dict[str, object]], Engine]:
    accused = sorted({acc for a in baseline if a["kind"] == "account" for acc in a["account_ids"]})  # type: ignore[attr-defined]
    assert accused
    allow = tmp_path / "allow.yaml"
    allow.write_text(
        f"- type: account\n  value: {accused[0]}\n  reason: eval partner\n  expires: {expires}\n"
    )
    engine = build_engine(ROOT / "rules", allowlist=allow)
    out = tmp_path / "a.jsonl"
    replay([sim / "events.parquet"], engine, out)
    return accused[0], [json.loads(x) for x in out.read_text().splitlines()], engine


def test_account_allowlist_suppresses_and_counts(
    sim: Path, baseline: list[dict[str, object]], tmp_path: Path
) -> None:
    target, alerts, engine = _replay_allowing_first_accused(sim, baseline, tmp_path, "2099-01-01T00:00:00Z")
    assert not any(target in a["account_ids"] for a in alerts)  # type: ignore[operator]
    assert engine.stats.suppressed["account"] > 0


def test_expired_allowlist_entry_suppresses_nothing(
    sim: Path, baseline: list[dict[str, object]], tmp_path: Path
) -> None:
    _, alerts, engine = _replay_allowing_first_accused(sim, baseline, tmp_path, "2000-01-01T00:00:00Z")
    assert alerts == baseline
    assert not engine.stats.suppressed


def test_hostile_allowlist_files_are_clear_errors(tmp_path: Path) -> None:
    """Deep nesting (RecursionError), values PyYAML cannot build (bare ValueError), alias bombs and
    Python tags all come back as a ValueError naming the file; a bad entry names its index and field,
    not the value (an allow-list may hold payment fingerprints)."""
    from detector.detect.allowlist import AllowList

    cases = {
        "deep": ("[" * 20_000 + "]" * 20_000, "nested more than"),
        "date": ("- {type: account, value: a, reason: r, expires: 2024-13-45}\n", "month must be"),
        "bigint": ("- {type: account, value: " + "9" * 5000 + ", reason: r}\n", "cannot read value"),
        "bomb": ("- &a [x, x]\n- &b [*a, *a]\n", "aliases"),
        "tag": ("- !!python/object/apply:os.system ['echo pwned']\n", "could not determine"),
        "entry": (
            "- {type: account, value: a, reason: r}\n- {type: card, value: fp-secret-1, reason: r}\n",
            "allow-list entry 2: type: Input should be",
        ),
    }
    for name, (text, fragment) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match="allow-list") as info:
            AllowList.load(path)
        assert str(path) in str(info.value) and fragment in str(info.value), (name, str(info.value)[:300])
        assert "fp-secret-1" not in str(info.value)
    good = tmp_path / "good.yaml"
    good.write_text("- {type: org, value: o1, reason: eval team, expires: 2099-01-01T00:00:00Z}\n")
    assert [e.value for e in AllowList.load(good).entries] == ["o1"]


def test_shadow_rules_are_counted_but_never_alert(sim: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    for f in rules.glob("*.yaml"):
        text = f.read_text()
        if "\nmode: shadow" not in text:
            f.write_text(text.replace("\ntarget:", "\nmode: shadow\ntarget:", 1))
    engine = build_engine(rules, models=False)  # rules only: model hits are live by design
    out = tmp_path / "a.jsonl"
    replay([sim / "events.parquet"], engine, out)
    assert out.read_text() == ""
    assert sum(engine.stats.shadow_hits.values()) > 0
    assert not engine.stats.rule_hits


def test_alerts_do_not_depend_on_how_input_is_sliced(
    sim: Path, baseline: list[dict[str, object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detector.runtime.replay as rp

    monkeypatch.setattr(rp, "SLICE_ROWS", 777)
    out = tmp_path / "a.jsonl"
    replay([sim / "events.parquet"], build_engine(ROOT / "rules"), out)
    assert [json.loads(x) for x in out.read_text().splitlines()] == baseline


def test_rule_reload_keeps_window_state(sim: Path, tmp_path: Path) -> None:
    """A rule added while running (RuleWatcher, as on SIGHUP) applies at once to the live windows."""
    import polars as pl

    from detector.detect.rules import RuleWatcher
    from detector.io.files import iter_file
    from detector.window.features import CATALOGUES

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "account_logprob_harvest.yaml").unlink()
    events = pl.concat([c.batch.events for c in iter_file(sim / "events.parquet")]).sort("ts", "request_id")
    half = events.height // 2
    watcher = RuleWatcher(rules, CATALOGUES)
    engine = build_engine(rules, models=False)  # rules only: the models see these accounts anyway
    engine.rules = watcher.current
    first = engine.process(events.slice(0, half))
    assert "account_logprob_harvest" not in engine.stats.rule_hits
    counted = engine.stats.events
    accounts = engine.state.accounts.height

    shutil.copy(ROOT / "rules" / "account_logprob_harvest.yaml", rules)
    watcher.request_reload()
    new = watcher.poll()
    assert new is not None
    engine.rules = new
    assert engine.stats.events == counted and engine.state.accounts.height == accounts
    rest = engine.process(events.slice(half)) + engine.flush()
    assert engine.stats.rule_hits["account_logprob_harvest"] > 0
    assert any(r.name == "account_logprob_harvest" for a in rest for r in a.reasons)
    assert first and engine.stats.events > counted


def test_empty_models_dir_setting_means_rules_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_MODELS_DIR", "")
    assert len(build_engine(ROOT / "rules").models) == 0
    monkeypatch.delenv("DETECTOR_MODELS_DIR")
    monkeypatch.chdir(ROOT)
    assert len(build_engine(ROOT / "rules").models) >= 2  # the shipped models, by default


def test_alert_book_closes_idle_episodes_and_reopens_with_a_new_id() -> None:
    """An episode quiet for longer than ``idle`` closes; the next verdict opens a new id at revision 1,
    and ``expire`` forgets closed episodes (the book is bounded state)."""
    from datetime import UTC, datetime, timedelta

    from detector.alert.verdict import AlertBook, Given, Verdict
    from detector.contracts import Reason, Severity

    def verdict(severity: str) -> Verdict:
        why = [Reason(source="rule", name="r", score=0.5, detail=None)]
        return Verdict(
            "account", "acct_a", ["acct_a"], Severity(severity), 0.5, None, Given(why), Given({}), t0
        )

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    book = AlertBook(idle=timedelta(hours=6))
    (first,) = book.update([verdict("medium")], t0, t0)
    assert first.revision == 1
    assert book.update([verdict("medium")], t0 + timedelta(hours=5), t0 + timedelta(hours=5)) == []
    book.touch("account", ["acct_a"], t0 + timedelta(hours=10))  # a verdict that changed nothing
    assert book.expire(t0 + timedelta(hours=15)) == 0  # 5 h since the touch: still open
    (up,) = book.update([verdict("high")], t0 + timedelta(hours=15), t0 + timedelta(hours=15))
    assert (up.alert_id, up.revision) == (first.alert_id, 2)
    assert book.expire(t0 + timedelta(hours=22)) == 1 and not book.episodes
    (again,) = book.update([verdict("medium")], t0 + timedelta(hours=30), t0 + timedelta(hours=30))
    assert again.alert_id != first.alert_id and again.revision == 1


def test_short_episode_idle_reopens_episodes_identically_however_sliced(
    sim: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 2-hour idle span, subjects that go quiet get a second episode (new id); the engine's
    vectorised account path agrees with itself at any batch size, and the book forgets closed ones."""
    import detector.runtime.replay as rp

    monkeypatch.setenv("DETECTOR_WINDOWS__EPISODE_IDLE", "PT2H")
    runs = []
    for rows in (rp.SLICE_ROWS, 777):
        monkeypatch.setattr(rp, "SLICE_ROWS", rows)
        out = tmp_path / f"a{rows}.jsonl"
        engine = build_engine(ROOT / "rules")
        replay([sim / "events.parquet"], engine, out)
        runs.append([json.loads(x) for x in out.read_text().splitlines()])
    assert runs[0] == runs[1]
    ids_by_subject: dict[tuple[object, object], set[object]] = {}
    for a in runs[0]:
        ids_by_subject.setdefault((a["kind"], a["subject"]), set()).add(a["alert_id"])
    reopened = [s for s, ids in ids_by_subject.items() if len(ids) > 1]
    assert reopened, "no subject went quiet for 2 h and came back"
    assert len(engine.book.episodes) < sum(len(ids) for ids in ids_by_subject.values())
    assert engine.stats.episodes_closed > 0  # counted for the metrics layer


def test_cluster_evidence_is_summarised_per_cluster_whether_batched_or_not() -> None:
    """Shared-key and link summaries are built only when an alert reads them; read one by one or
    batched through ``fill``, every cluster gets its own."""
    from datetime import UTC, datetime

    import polars as pl

    from detector.alert.evidence import ClusterContext, ClusterEvidence

    now = datetime(2026, 3, 2, tzinfo=UTC)
    keys = pl.DataFrame(
        {
            "account_id": ["a1", "a2", "b1", "b2"],
            "family": ["payment", "payment", "client", "client"],
            "key": ["card-A", "card-A", "tls-B", "tls-B"],
        }
    )
    members = pl.DataFrame({"account_id": ["a1", "a2", "b1", "b2"], "cluster_id": ["cA", "cA", "cB", "cB"]})
    links = pl.DataFrame(
        {
            "cluster_id": ["cA", "cB"],
            "link": ["payment", "client+template"],
            "accounts": [2, 2],
            "weight": [1.0, 1.0],
            "last_seen": [now, now],
        }
    )
    for batched in (False, True):
        ctx = ClusterContext(keys, members, links, now)
        ev = {c: ClusterEvidence(ctx, c, {"accounts": 2}) for c in ("cA", "cB")}
        if batched:
            ctx.fill(["cA", "cB"])
        a, b = ev["cA"](), ev["cB"]()
        assert a["shared"] == {"payment": ["card-A (2 accounts)"]} and a["accounts"] == 2
        assert b["shared"] == {"client": ["tls-B (2 accounts)"]}
        assert a["links"][0].startswith("payment: 2 accounts") and b["links"][0].startswith("client+template")
