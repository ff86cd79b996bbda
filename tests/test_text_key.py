"""The deployment's secret key on ``text_fp`` (round 13): SipHash-2-4 of the public text hash.

Without a key nothing changes. With one, a checkpoint holds no public hash of a prompt (a guess cannot
be confirmed), a farm's decoy text with the smallest public hash wins a bucket's sample only by chance,
the key appears in no state, log or error, a key file that cannot be read is one line, and the daemon's
decoding workers key ``text_fp`` exactly as replay does. Template fingerprints stay public.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import SecretStr

from detector.app import build_engine, engine_settings, text_key
from detector.checkpoint import TEXT_KEY_CHECK, load_engine, save_engine
from detector.decode import decode_lines
from detector.enrich.prompt.hashing import TextKey, _siphash24_np, siphash24_u64, stable_hash64
from detector.enrich.prompt_features import PARALLEL_MIN_ROWS, add_prompt_features
from detector.errors import ConfigError
from detector.io.files import iter_parquet
from detector.lab.simulate import simulate
from detector.runtime.merge import OFF, PART
from detector.runtime.replay import replay
from detector.runtime.stream.decoding import Decoder, decode_poll
from detector.runtime.stream.kafkapython import records_of
from detector.settings import EngineSettings
from detector.window.sheets import sheet_rows

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("detector")
SCENARIO = ROOT / "tests" / "scenarios" / "campaign_multilingual_coercion" / "events.jsonl.gz"
KEY_A = "round-13-text-key-A-0123456789abcdef"
KEY_B = "round-13-text-key-B-fedcba9876543210"


def _settings(key: str | None) -> EngineSettings:
    es = engine_settings(ROOT / "rules", models=False)
    return es.model_copy(update={"text_key": None if key is None else SecretStr(key)})


# ------------------------------------------------------------------------------------------ the hash


def test_siphash_matches_the_published_vector_and_the_vector_twin_matches_the_reference() -> None:
    # SipHash-2-4 paper, appendix A: key 00..0f, message 00..07 -> a0..: the 8-byte vector
    k = bytes(range(16))
    k0, k1 = int.from_bytes(k[:8], "little"), int.from_bytes(k[8:], "little")
    assert siphash24_u64(k0, k1, int.from_bytes(bytes(range(8)), "little")) == 0x93F5F5799A932462
    key = TextKey(KEY_A.encode())
    rng = random.Random(5)
    values = [rng.getrandbits(64) for _ in range(500)] + [0, (1 << 64) - 1]
    got = key.series(pl.Series("text_fp", [*values, None], dtype=pl.UInt64)).to_list()
    assert got == [key.hash64(v) for v in values] + [None]
    assert len(set(got[:-1])) == len(values)  # no collisions among distinct texts


#: SipHash-2-4 of 8-byte messages (the little-endian bytes of the word) under several keys, from an
#: independent implementation (the ``siphash24`` package's C code, which gives the paper's 64 vectors):
#: all-zero, all-one and random keys; words 0, 1, 2**63, 2**64 - 1 and a random one (endianness, carries).
INDEPENDENT_VECTORS = [
    ("000102030405060708090a0b0c0d0e0f", 0x0000000000000000, 0x39D3851CA07681A7),
    ("000102030405060708090a0b0c0d0e0f", 0x0000000000000001, 0x2B91B2B085E6D1F6),
    ("000102030405060708090a0b0c0d0e0f", 0xFFFFFFFFFFFFFFFF, 0x2A68FF30A3D9DA34),
    ("000102030405060708090a0b0c0d0e0f", 0x8000000000000000, 0x45F93120D11C42C2),
    ("000102030405060708090a0b0c0d0e0f", 0x0706050403020100, 0x93F5F5799A932462),
    ("000102030405060708090a0b0c0d0e0f", 0x2FF7C0FCBBE8F88D, 0x7973DC114054A775),
    ("00000000000000000000000000000000", 0x0000000000000000, 0xE849E8BB6FFE2567),
    ("00000000000000000000000000000000", 0x0000000000000001, 0x8004C5A694105F5E),
    ("00000000000000000000000000000000", 0xFFFFFFFFFFFFFFFF, 0x8050C18B6AC9D15E),
    ("00000000000000000000000000000000", 0x8000000000000000, 0xB2E6C2E3DBBB15F1),
    ("00000000000000000000000000000000", 0x1221B5A22155A41C, 0x813CAF4DCD0BE5FB),
    ("ffffffffffffffffffffffffffffffff", 0x0000000000000000, 0x93E9A1F113E70A00),
    ("ffffffffffffffffffffffffffffffff", 0x0000000000000001, 0xB71B9032AC2C875A),
    ("ffffffffffffffffffffffffffffffff", 0xFFFFFFFFFFFFFFFF, 0xF13E77491777F9D0),
    ("ffffffffffffffffffffffffffffffff", 0x8000000000000000, 0x2EDCD8667C86982D),
    ("ffffffffffffffffffffffffffffffff", 0xD885BBAC88043E5F, 0x7B3FC3F77A3B7D6F),
    ("424aafe8afcdd9e32fa63baa25de39a4", 0x0000000000000000, 0x2BB32AB64ADD6367),
    ("424aafe8afcdd9e32fa63baa25de39a4", 0x0000000000000001, 0x44ED7878D62729FF),
    ("424aafe8afcdd9e32fa63baa25de39a4", 0xFFFFFFFFFFFFFFFF, 0x754F6F6C00219C7A),
    ("424aafe8afcdd9e32fa63baa25de39a4", 0x8000000000000000, 0xEAB37B9C2346019D),
    ("424aafe8afcdd9e32fa63baa25de39a4", 0xBEA4256E36C2A4C7, 0x8260FB7699A19B40),
]


def test_siphash_and_its_vector_twin_match_an_independent_implementation_on_many_keys() -> None:
    for key_hex, word, want in INDEPENDENT_VECTORS:
        k = bytes.fromhex(key_hex)
        k0, k1 = int.from_bytes(k[:8], "little"), int.from_bytes(k[8:], "little")
        assert siphash24_u64(k0, k1, word) == want, (key_hex, hex(word))
        words = pl.Series([word, word ^ 1], dtype=pl.UInt64).to_numpy()
        assert int(_siphash24_np(k0, k1, words)[0]) == want, (key_hex, hex(word))


def test_the_key_never_prints_and_reaches_a_worker_whole() -> None:
    key = TextKey(KEY_A.encode())
    assert KEY_A not in repr(key) and KEY_A not in str(key) and "***" in repr(key)
    back = pickle.loads(pickle.dumps(key))  # how the daemon hands it to a decoding worker
    assert back.hash64(12345) == key.hash64(12345) and back.check == key.check
    assert TextKey(KEY_B.encode()).check != key.check and KEY_A.encode().hex() not in key.check


def test_each_guess_of_the_secret_costs_a_scrypt() -> None:
    """The words and the check come from scrypt of the secret (16 MiB, tens of milliseconds a guess), not
    from a fast hash of it: a checkpoint's check or its samples cannot be tested at blake2b's speed."""
    secret = KEY_A.encode()
    fast = hashlib.blake2b(secret, digest_size=8, person=b"det-text-chk").hexdigest()
    master = hashlib.scrypt(secret, salt=b"distillation-detector/text-key/v1", n=2**14, r=8, p=1, dklen=32)
    slow = hashlib.blake2b(master, digest_size=8, person=b"det-text-chk").hexdigest()
    assert TextKey(secret).check == slow != fast


def test_only_text_fp_is_keyed_in_one_pass_and_in_parallel_slices() -> None:
    rng = random.Random(3)
    pool = ["Think step by step: what is 17 * 23?", "Which model are you?", "def f(): pass", "Hello", None]
    df = pl.DataFrame({"prompt_text": [rng.choice(pool) for _ in range(2 * PARALLEL_MIN_ROWS + 17)]})
    df = df.with_columns(pl.lit(None, pl.String).alias("prompt_simhash"))
    df[3, "prompt_simhash"] = "00000000000000ff"  # no text: the SimHash stands in, and is keyed too
    key = TextKey(KEY_A.encode())
    plain, keyed = add_prompt_features(df), add_prompt_features(df, key)
    assert_frame_equal(plain.drop("text_fp"), keyed.drop("text_fp"))  # template_fp stays public
    assert keyed["text_fp"].to_list() == key.series(plain["text_fp"]).to_list()
    assert plain["text_fp"].null_count() == keyed["text_fp"].null_count() > 0
    text = "Think step by step: what is 17 * 23?"
    assert stable_hash64(text.encode()) in plain["text_fp"].to_list()
    assert stable_hash64(text.encode()) not in keyed["text_fp"].to_list()


# --------------------------------------------------------------------------------- the decoy attack


def _decoy_farm(seats: int = 4, buckets: int = 100, texts: int = 8) -> tuple[pl.DataFrame, int]:
    """A farm's enriched requests (public ``text_fp``): per bucket and seat one decoy text, shared by every
    seat and chosen for the smallest public hash, beside ``texts - 1`` distinct harvest texts; and the
    decoy's public hash."""
    cands = [f"Think step by step and solve problem {i}: a train leaves at {i % 13}." for i in range(4000)]
    cands.sort(key=lambda t: stable_hash64(t.encode()))
    decoy, harvest = cands[0], iter(cands[1:])
    rows = []
    for s in range(seats):
        for b in range(buckets):
            for t in [decoy] + [next(harvest) for _ in range(texts - 1)]:
                rows.append({"account_id": f"seat{s}", "bucket": b, "prompt_text": t})
    start = pl.datetime(2026, 5, 1, time_unit="us", time_zone="UTC")
    ev = add_prompt_features(pl.DataFrame(rows)).with_columns(
        (start + pl.duration(minutes=15 * pl.col("bucket"))).alias("bucket")
    )
    assert ev["cot_elicit"].all()
    return ev, stable_hash64(decoy.encode())


def _decoy_share(ev: pl.DataFrame, decoy: int, key: TextKey | None) -> float:
    """The share of (seat, bucket) sheet samples (the real ``sheet_rows``) that are the decoy's text."""
    if key is not None:  # what add_prompt_features(..., key) gives (tested above), without redoing it
        ev, decoy = ev.with_columns(key.series(ev["text_fp"])), key.hash64(decoy)
    codes = pl.DataFrame({"account_id": ev["account_id"].unique().sort(), "account_code": range(4)})
    sample = sheet_rows(ev, codes)
    assert sample.height == 400
    return float((sample["text_fp"] == decoy).mean())  # type: ignore[arg-type]


def test_a_decoy_with_the_smallest_public_hash_wins_every_sample_without_a_key_and_one_in_n_with() -> None:
    """Without a key the decoy is every bucket's sample: the farm reads as one shared sheet. Under a key
    the farm cannot know, the decoy's place among the texts is a draw: over deployments (keys) it wins
    1/8 of the samples on average (a lucky draw wins many, most win few: median ~0.8%)."""
    ev, decoy = _decoy_farm()
    assert _decoy_share(ev, decoy, None) == 1.0
    shares = [
        _decoy_share(ev, decoy, TextKey(f"deployment-key-{i:04d}-of-this-test".encode())) for i in range(200)
    ]
    mean, median = sum(shares) / len(shares), sorted(shares)[len(shares) // 2]
    assert 0.075 <= mean <= 0.175, mean  # 1/8 expected (sd of the mean over 200 keys ~0.016)
    assert median < 0.05 and max(shares) < 1.0, (median, max(shares))


# ------------------------------------------------------------------------ state, logs and checkpoints


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("textkey-sim")
    simulate(d, days=0.25, seed=3, scale=0.05)
    return d


def _run(sim: Path, key: str | None, root: Path) -> set[int]:
    """Replay under ``key``, checkpoint into ``root``; every integer the checkpoint's tables hold."""
    engine = build_engine(settings=_settings(key))
    replay([sim / "events.parquet"], engine, root / "alerts.jsonl")
    folder = save_engine(engine, root / "state")
    held: set[int] = set()
    for path in folder.glob("*.parquet"):
        frame = pl.read_parquet(path)
        for name, dtype in frame.schema.items():
            if dtype.is_integer():
                held |= set(frame[name].cast(pl.UInt64, strict=False).drop_nulls().to_list())
    return held


def test_a_checkpoint_cannot_confirm_a_guessed_prompt_and_two_keys_sample_differently(
    sim: Path, tmp_path: Path
) -> None:
    """Every public text hash of the day's prompts (what a guess hashes to) against every integer of the
    checkpoint's tables. Template fingerprints stay public by design (allow-lists name them), and a
    prompt that is one sentence without digits has its template fingerprint equal to its text hash: the
    only matches allowed, in ``templates.parquet``."""
    public, templates = set(), set()
    for chunk in iter_parquet(sim / "events.parquet"):
        feats = add_prompt_features(chunk.batch.events)
        public |= set(feats["text_fp"].drop_nulls().to_list())
        templates |= set(feats["template_fp"].drop_nulls().to_list())
    plain = _run(sim, None, tmp_path / "none")
    assert plain & public - templates, "without a key the samples hold public hashes: a guess is confirmed"
    held_a, held_b = _run(sim, KEY_A, tmp_path / "a"), _run(sim, KEY_B, tmp_path / "b")
    assert held_a & public <= templates and held_b & public <= templates
    for table in ("sheets", "openers"):
        frame = pl.read_parquet(next((tmp_path / "a" / "state").rglob(f"{table}.parquet")))
        assert frame.height and not set(frame["text_fp"].drop_nulls().to_list()) & public, table
    # the samples are there, under the key; which texts won them depends on the key
    key_a, key_b = TextKey(KEY_A.encode()), TextKey(KEY_B.encode())  # derived once: scrypt is slow by design
    back_a = {key_a.hash64(v): v for v in public}
    back_b = {key_b.hash64(v): v for v in public}
    won_a = {back_a[v] for v in held_a if v in back_a}
    won_b = {back_b[v] for v in held_b if v in back_b}
    assert won_a and won_b and won_a != won_b


def test_the_key_appears_in_no_state_and_no_log(
    sim: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _run(sim, KEY_A, tmp_path)
    key = TextKey(KEY_A.encode())
    words = [key._k0, key._k1]  # looking for them is the point
    needles = [KEY_A.encode(), KEY_A.encode().hex().encode()]
    needles += [w.to_bytes(8, "little") for w in words] + [str(w).encode() for w in words]
    needles += [f"{w:x}".encode() for w in words]
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()] + [tmp_path / "alerts.jsonl"]
    assert files
    for path in files:
        data = path.read_bytes()
        assert not any(n in data for n in needles), path
    text = caplog.text.encode()
    assert not any(n in text for n in needles)
    meta = next((tmp_path / "state").rglob("meta.json")).read_text()
    assert f'"{TEXT_KEY_CHECK}": "{key.check}"' in meta


def test_a_checkpoint_refuses_another_key_or_none(sim: Path, tmp_path: Path) -> None:
    _run(sim, KEY_A, tmp_path / "a")
    _run(sim, None, tmp_path / "none")
    assert TEXT_KEY_CHECK not in next((tmp_path / "none" / "state").rglob("meta.json")).read_text()
    for root, key in (("a", KEY_B), ("a", None), ("none", KEY_A)):
        fresh = build_engine(settings=_settings(key))
        with pytest.raises(ConfigError) as info:
            load_engine(fresh, tmp_path / root / "state")
        assert info.value.location == "DETECTOR_TEXT_KEY" and "--reset-state" in str(info.value)
        assert KEY_A not in str(info.value) and KEY_B not in str(info.value)
    for root, key in (("a", KEY_A), ("none", None)):
        assert load_engine(build_engine(settings=_settings(key)), tmp_path / root / "state") is not None


def test_the_daemon_refuses_another_key_at_start_not_at_its_first_assignment(tmp_path: Path) -> None:
    """``build_daemon`` (``detector run``) reads the current checkpoint's check before joining the
    group: a standby replica under the wrong key stops at once, not at the failover it waits for.
    ``--reset-state`` (the state moved aside) and an empty state directory start."""
    from detector.app import build_daemon
    from detector.runtime.stream.settings import StreamSettings

    state = tmp_path / "state"
    save_engine(build_engine(settings=_settings(KEY_A)), state)
    stream = StreamSettings(bootstrap_servers="127.0.0.1:9", state_dir=state, metrics_port=0)
    for key in (KEY_B, None):  # no broker at that address: the refusal comes before any connection
        with pytest.raises(ConfigError) as info:
            build_daemon(stream, engine=_settings(key), watch_rules=False)
        assert info.value.location == "DETECTOR_TEXT_KEY" and KEY_A not in str(info.value)
    build_daemon(stream, engine=_settings(KEY_A), watch_rules=False)
    build_daemon(stream, engine=_settings(KEY_B), watch_rules=False, reset_state=True)
    empty = stream.model_copy(update={"state_dir": tmp_path / "fresh"})
    build_daemon(empty, engine=_settings(KEY_B), watch_rules=False)


# ------------------------------------------------------------------------------------- configuration


def test_the_file_is_read_once_the_variable_wins_and_a_short_key_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "text.key"
    f.write_text(KEY_B + "\n")
    es = engine_settings(base=_settings(None).model_copy(update={"text_key_file": f}))
    key = text_key(es)
    assert key is not None and key.check == TextKey(KEY_B.encode()).check
    f.unlink()  # read once: the settings carry it from here on
    key = text_key(engine_settings(base=es))
    assert key is not None and key.check == TextKey(KEY_B.encode()).check
    f.write_text(KEY_B)
    key = text_key(engine_settings(base=_settings(KEY_A).model_copy(update={"text_key_file": f})))
    assert key is not None and key.check == TextKey(KEY_A.encode()).check  # the variable wins
    assert text_key(_settings(None)) is None
    with pytest.raises(ConfigError) as info:
        text_key(_settings("tiny-k3y"))
    assert info.value.location == "DETECTOR_TEXT_KEY" and "tiny-k3y" not in str(info.value)
    # the line names where the short key came from: the variable even when a file is also set, the file
    with pytest.raises(ConfigError) as info:
        text_key(engine_settings(base=_settings("tiny-k3y").model_copy(update={"text_key_file": f})))
    assert info.value.location == "DETECTOR_TEXT_KEY"
    f.write_text("tiny-k3y\n")
    with pytest.raises(ConfigError) as info:
        engine_settings(base=_settings(None).model_copy(update={"text_key_file": f}))
    assert info.value.location == str(f) and "tiny-k3y" not in str(info.value)


def test_a_key_file_is_read_bounded_as_utf8_text_and_the_variable_is_stripped_as_a_file(
    tmp_path: Path,
) -> None:
    """A wrong path (a device, a big file) is refused after 4 KiB, not read until memory runs out; a
    binary file says it is not text; whitespace around the variable counts as little as around a file."""
    base = _settings(None)
    big = tmp_path / "big.key"
    big.write_text("x" * 10_000 + "\n")
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe" + bytes(range(200, 240)))
    cases = [(big, "longer than 4096 bytes"), (binary, "not UTF-8 text")]
    if Path("/dev/urandom").exists():
        cases.append((Path("/dev/urandom"), "longer than 4096 bytes"))
    for path, says in cases:
        with pytest.raises(ConfigError) as info:
            engine_settings(base=base.model_copy(update={"text_key_file": path}))
        assert info.value.location == str(path) and says in str(info.value), str(info.value)
    f = tmp_path / "text.key"
    f.write_text(f"  {KEY_B}\n")
    from_file = text_key(engine_settings(base=base.model_copy(update={"text_key_file": f})))
    from_var = text_key(_settings(f"{KEY_B}\n"))
    assert from_file is not None and from_var is not None and from_var.check == from_file.check
    with pytest.raises(ConfigError) as info:  # sixteen spaces are no secret
        text_key(_settings(" " * 16))
    assert info.value.location == "DETECTOR_TEXT_KEY"


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def test_an_unreadable_key_file_or_a_short_key_is_one_line(sim: Path, tmp_path: Path) -> None:
    args = ["replay", str(sim / "events.parquet"), "--alerts-out", str(tmp_path / "a.jsonl"), "--no-models"]
    missing = tmp_path / "no-such.key"
    unreadable = tmp_path / "folder.key"
    unreadable.mkdir()
    for path in (missing, unreadable):
        got = _cli(args, tmp_path, {"DETECTOR_TEXT_KEY_FILE": str(path)})
        lines = [line for line in got.stderr.splitlines() if line.strip()]
        assert got.returncode == 2 and len(lines) == 1 and str(path) in lines[0], got.stderr
        assert "Traceback" not in got.stderr
    got = _cli(args, tmp_path, {"DETECTOR_TEXT_KEY": "too-short"})
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 2 and len(lines) == 1 and "DETECTOR_TEXT_KEY" in lines[0], got.stderr
    assert "too-short" not in got.stderr
    assert not (tmp_path / "a.jsonl").exists() or not (tmp_path / "a.jsonl").read_bytes()


# ------------------------------------------------------------------------- the daemon's decode path


def test_the_decoding_worker_keys_text_fp_exactly_as_replay_does() -> None:
    lines = gzip.decompress(SCENARIO.read_bytes()).splitlines()[:400]
    es = _settings(KEY_A)
    engine = build_engine(settings=es)
    assert engine.text_key is not None
    replayed = engine.enrich(decode_lines(lines, position_of=str).events)
    inline = decode_poll("in", list(lines), [0] * len(lines), list(range(len(lines))), None, engine.text_key)
    pooled = Decoder("in", 1)
    try:
        pooled.text_key = engine.text_key  # what the daemon does at each assignment (rebalance.py)
        records = records_of({_TP("in", 0): [_Rec(v, o) for o, v in enumerate(lines)]})
        worker = pooled.start(records).result()
    finally:
        pooled.close()
    want = replayed.select("request_id", "text_fp", "template_fp").sort("request_id")
    for got in (inline, worker):
        assert_frame_equal(got.events.drop(PART, OFF).select(want.columns).sort("request_id"), want)
    unkeyed = build_engine(settings=_settings(None)).enrich(decode_lines(lines, position_of=str).events)
    assert not set(unkeyed["text_fp"].drop_nulls()) & set(want["text_fp"].drop_nulls())


class _TP(NamedTuple):
    topic: str
    partition: int


class _Rec:
    """The parts of a kafka-python ``ConsumerRecord`` the daemon reads."""

    def __init__(self, value: bytes, offset: int) -> None:
        self.value, self.key, self.offset, self.headers, self.timestamp = value, b"k", offset, [], -1
