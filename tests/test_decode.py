"""Batch decoding (``detector.decode``) on the shared contract examples.

JSON Lines buffers and files, Kafka value sequences and Parquet frames must all give the same good events
in ``EVENT_SCHEMA`` and the same field-named rejects at the right positions; prompt text must never leak
into a reject; a bad record never takes down its batch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import detector.decode as decode_module
from detector.contracts import GatewayEvent
from detector.deadletter import summarize
from detector.decode import (
    MAX_RECORD_BYTES,
    REASONS,
    DecodedBatch,
    Reject,
    decode_lines,
)
from detector.decode_parquet import conform, decode_frame
from detector.schema import EVENT_SCHEMA, FIELD_PATHS, RAW_SCHEMA
from detector.strict_json import BOM

pytestmark = pytest.mark.shared

#: (reason code, field) every bad example must be rejected with.
EXPECTED_BAD: dict[str, tuple[str, str | None]] = {
    "bad_ip.json": ("invalid_value", "client.ip"),
    "bad_simhash.json": ("invalid_value", "prompt.simhash"),
    "empty_request_id.json": ("invalid_value", "request_id"),
    "missing_account.json": ("missing_field", "account_id"),
    "naive_timestamp.json": ("invalid_value", "ts"),
    "negative_tokens.json": ("invalid_value", "usage.input_tokens"),
    "string_tokens.json": ("type_error", "usage.input_tokens"),
    "wrong_version.json": ("schema_version", "schema_version"),
    "not_json.txt": ("not_json", None),
    "not_object.json": ("not_object", None),
}

SECRET = "TOP-SECRET-PROMPT-4f9c2e"


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------
def _read(path: Path) -> bytes:
    raw = path.read_bytes().rstrip(b"\r\n")
    assert b"\n" not in raw, f"{path.name} is not a single line"
    return raw


@pytest.fixture(scope="module")
def good(contracts_dir: Path) -> dict[str, bytes]:
    files = sorted((contracts_dir / "examples" / "good").iterdir())
    assert files
    return {p.name: _read(p) for p in files}


@pytest.fixture(scope="module")
def bad(contracts_dir: Path) -> dict[str, bytes]:
    files = sorted((contracts_dir / "examples" / "bad").iterdir())
    names = {p.name for p in files}
    assert set(EXPECTED_BAD) <= names, f"bad examples renamed or removed: {set(EXPECTED_BAD) - names}"
    return {p.name: _read(p) for p in files if p.name in EXPECTED_BAD}


def file_pos(name: str) -> Callable[[int], str]:
    return lambda i: f"{name}:{i + 1}"


def kafka_pos(topic: str = "gateway-events", partition: int = 3, base: int = 1000) -> Callable[[int], str]:
    return lambda i: f"{topic}/{partition}@{base + i}"


def request_id(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return obj.get("request_id") if isinstance(obj, dict) else None


def expected_row(raw: bytes) -> dict[str, Any]:
    """The flat row the decoder must produce, derived independently through the pydantic model."""
    dump = GatewayEvent.model_validate_json(raw).model_dump()
    row: dict[str, Any] = {}
    for col, path in FIELD_PATHS.items():
        value: Any = dump
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        row[col] = value
    return row


def check_invariants(batch: DecodedBatch) -> None:
    """What holds for every decoded batch."""
    assert batch.events.drop("_pos").schema == EVENT_SCHEMA
    assert batch.events.columns == [*EVENT_SCHEMA.names(), "_pos"]
    assert batch.events.height + batch.duplicates + len(batch.rejects) == batch.records
    assert batch.events["request_id"].is_unique().all()
    assert batch.events["_pos"].is_sorted()
    assert [r.index for r in batch.rejects] == sorted(r.index for r in batch.rejects)
    for r in batch.rejects:
        assert r.reason in REASONS, r
        assert r.detail and r.position, r
        assert isinstance(r.raw, bytes)
        json.dumps(r.to_json_dict())  # dead-letter form is plain JSON


def build_buffer(
    items: list[tuple[str, bytes]], rng: random.Random | None = None
) -> tuple[bytes, dict[str, list[int]]]:
    """A JSON Lines buffer with blank/whitespace lines between records; name -> 1-based line numbers."""
    blanks = [b"", b"   ", b"\t", b"\r"]
    lines: list[bytes] = []
    where: dict[str, list[int]] = {}
    for k, (name, raw) in enumerate(items):
        n_blank = rng.randint(0, 2) if rng else k % 3
        lines += [blanks[(k + j) % len(blanks)] for j in range(n_blank)]
        lines.append(raw)
        where.setdefault(name, []).append(len(lines))
    if rng is None or rng.random() < 0.5:
        lines.append(b"")  # trailing newline
    return b"\n".join(lines), where


def with_secret(raw: bytes, text: str = SECRET + " and the rest of the user turn") -> bytes:
    obj = json.loads(raw)
    assert isinstance(obj, dict)
    prompt = obj.get("prompt") or {}
    obj["prompt"] = {**prompt, "text": text}
    return json.dumps(obj).encode()


def assert_no_secret(rejects: list[Reject], secret: str = SECRET) -> None:
    fragment = secret[4:16]  # no recognisable part either, not just the whole string
    for r in rejects:
        for blob in (r.raw.decode("utf-8", "replace"), r.detail, json.dumps(r.to_json_dict())):
            assert fragment not in blob, (r.position, r.reason, blob[:300])


# --------------------------------------------------------------------------------------------------
# JSON Lines buffers
# --------------------------------------------------------------------------------------------------
def test_mixed_buffer_good_events_and_field_named_rejects(
    good: dict[str, bytes], bad: dict[str, bytes]
) -> None:
    items = [*good.items(), *bad.items()]
    random.Random(7).shuffle(items)
    buf, where = build_buffer(items)
    batch = decode_lines(buf, file_pos("mixed.jsonl"))
    check_invariants(batch)

    assert batch.records == len(items)
    assert batch.duplicates == 0
    # good ones: in input order, values equal to what the contract model parses
    order = [name for name, _ in items if name in good]
    assert batch.events["request_id"].to_list() == [request_id(good[n]) for n in order]
    for name, row in zip(order, batch.events.drop("_pos").to_dicts(), strict=True):
        assert row == expected_row(good[name]), name
    # _pos is the record's index among the non-blank lines
    assert batch.events["_pos"].to_list() == [i for i, (n, _) in enumerate(items) if n in good]
    # bad ones: reason, field and the ORIGINAL line number (blank lines counted)
    got = {r.position: (r.reason, r.field) for r in batch.rejects}
    want = {f"mixed.jsonl:{where[name][0]}": EXPECTED_BAD[name] for name in bad}
    assert got == want


def test_timestamps_are_utc_aware_and_offsets_converted(good: dict[str, bytes]) -> None:
    batch = decode_lines(b"\n".join(good.values()), file_pos("g.jsonl"))
    assert batch.events.schema["ts"] == pl.Datetime("us", "UTC")
    assert batch.events.schema["account_created_at"] == pl.Datetime("us", "UTC")
    ts = dict(zip(batch.events["request_id"], batch.events["ts"], strict=True))
    assert ts["req_0003"] == datetime(2026, 2, 10, 11, 35, 1, 500000, tzinfo=UTC)  # "...12:35:01.5+01:00"
    assert ts["req_0001"] == datetime(2026, 2, 10, 12, 34, 56, 789000, tzinfo=UTC)
    assert ts["req_0002"] == datetime(2026, 2, 10, 12, 35, tzinfo=UTC)
    assert all(t.utcoffset() is not None and t.utcoffset().total_seconds() == 0 for t in ts.values())
    created = batch.events.filter(pl.col("request_id") == "req_0001")["account_created_at"].item()
    assert created == datetime(2026, 2, 9, 3, 0, tzinfo=UTC)


def test_each_bad_example_alone(bad: dict[str, bytes]) -> None:
    """One bad record as a whole batch (fast path for column-wise failures, bisection of one otherwise)."""
    for name, raw in bad.items():
        batch = decode_lines(raw + b"\n", file_pos(name))
        check_invariants(batch)
        assert batch.events.height == 0 and batch.records == 1
        assert [(r.reason, r.field, r.position) for r in batch.rejects] == [
            (*EXPECTED_BAD[name], f"{name}:1")
        ]
        if EXPECTED_BAD[name][1]:
            assert EXPECTED_BAD[name][1] in batch.rejects[0].detail  # the detail names the field too


def test_path_input_matches_buffer(good: dict[str, bytes], bad: dict[str, bytes], tmp_path: Path) -> None:
    buf, _ = build_buffer([*bad.items(), *good.items()])
    path = tmp_path / "events.jsonl"
    path.write_bytes(buf)
    a = decode_lines(buf, file_pos(str(path)))
    b = decode_lines(path, file_pos(str(path)))
    assert_frame_equal(a.events, b.events)
    assert a.rejects == b.rejects
    assert (a.records, a.duplicates) == (b.records, b.duplicates)


def test_empty_and_blank_batches() -> None:
    for data in (b"", b"\n\n", b"  \n\t\n", []):
        batch = decode_lines(data, file_pos("empty"))
        check_invariants(batch)
        assert batch.records == 0 and batch.events.height == 0 and not batch.rejects


def test_duplicates_counted_once(good: dict[str, bytes], bad: dict[str, bytes]) -> None:
    full, minimal, text_free = good["full.json"], good["minimal.json"], good["text_free.json"]
    seq = [full, minimal, full, text_free, minimal, full]
    for data in (
        b"\n".join(seq),
        seq,
        b"\n".join([*seq, bad["not_json.txt"]]),
        [*seq, bad["not_object.json"]],
    ):
        batch = decode_lines(data, file_pos("dups"))
        check_invariants(batch)
        assert batch.events["request_id"].to_list() == ["req_0001", "req_0002", "req_0003"]
        assert batch.events["_pos"].to_list() == [0, 1, 3]  # the first delivery is the one kept
        assert batch.duplicates == 3


# --------------------------------------------------------------------------------------------------
# Kafka values
# --------------------------------------------------------------------------------------------------
def _multiline(raw: bytes) -> bytes:
    """The same record pretty-printed over several lines (newlines only between tokens)."""
    out = json.dumps(json.loads(raw), indent=2).encode()
    assert out.count(b"\n") > 3
    return out


def test_kafka_values_with_newline_and_oversized(good: dict[str, bytes], bad: dict[str, bytes]) -> None:
    limit = 4096
    huge = with_secret(good["minimal.json"], SECRET + " " + "x" * limit)
    values = [
        _multiline(good["full.json"]),
        bad["bad_ip.json"],
        huge,
        good["minimal.json"],
        bad["not_json.txt"],
        good["text_free.json"],
        b"",
    ]
    batch = decode_lines(values, kafka_pos(), max_record_bytes=limit)
    check_invariants(batch)
    assert batch.records == len(values)
    assert batch.events["request_id"].to_list() == ["req_0001", "req_0002", "req_0003"]
    assert batch.events["_pos"].to_list() == [0, 3, 5]
    got = [(r.position, r.reason, r.field) for r in batch.rejects]
    assert got == [
        ("gateway-events/3@1001", "invalid_value", "client.ip"),
        ("gateway-events/3@1002", "oversized", None),
        ("gateway-events/3@1004", "not_json", None),
        ("gateway-events/3@1006", "not_json", None),
    ]
    oversized = batch.rejects[1]
    assert len(oversized.raw) <= limit + 64 and str(len(huge)) in oversized.detail
    assert_no_secret(batch.rejects)
    # the same good records as a file give the same events
    rows = decode_lines(b"\n".join(good.values()), file_pos("f"))
    assert_frame_equal(batch.events.drop("_pos"), rows.events.drop("_pos"))


def test_kafka_values_fast_path(good: dict[str, bytes], bad: dict[str, bytes]) -> None:
    """All values parse: one polars call, positions still per value."""
    values = [_multiline(good["text_free.json"]), bad["negative_tokens.json"], good["full.json"]]
    batch = decode_lines(values, kafka_pos(partition=0, base=0))
    check_invariants(batch)
    assert batch.events["request_id"].to_list() == ["req_0003", "req_0001"]
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [
        ("gateway-events/0@1", "invalid_value", "usage.input_tokens")
    ]


def test_default_record_limit(good: dict[str, bytes]) -> None:
    big = with_secret(good["minimal.json"], "y" * MAX_RECORD_BYTES)
    batch = decode_lines([good["full.json"], big], kafka_pos())
    assert [r.reason for r in batch.rejects] == ["oversized"] and batch.events.height == 1


# --------------------------------------------------------------------------------------------------
# Prompt text never leaks
# --------------------------------------------------------------------------------------------------
def _secret_records(bad: dict[str, bytes], good: dict[str, bytes]) -> list[bytes]:
    out = [with_secret(raw) for name, raw in bad.items() if name not in ("not_json.txt", "not_object.json")]
    full = with_secret(good["full.json"], SECRET + ' line one\nline "two" \\ three')
    dumped = full.decode()
    start = dumped.index(SECRET)
    out += [
        full[: start + len(SECRET) + 4],  # cut inside the text
        full[: dumped.index("\\n", start) + 1],  # cut right after a backslash inside the text
        full[: dumped.index('\\"', start) + 1],
        full[: dumped.index('"turns"')],  # cut after the text was closed
        bad["not_json.txt"].replace(
            b'"model": "m"', f'"prompt": {{"text": "{SECRET}"}}, "model": "m"'.encode()
        ),
        json.dumps([{"prompt": {"text": SECRET}}]).encode(),  # not an object
        json.dumps({"prompt": {"text": SECRET, "turns": "many"}}).encode(),  # bad field beside the text
        with_secret(good["minimal.json"]).replace(b'"schema_version": 1', b'"schema_version": "1"'),
    ]
    return out


def test_prompt_text_never_in_rejects(good: dict[str, bytes], bad: dict[str, bytes]) -> None:
    records = _secret_records(bad, good)
    for data in (b"\n".join(records), records):
        batch = decode_lines(data, file_pos("secret.jsonl"))
        check_invariants(batch)
        assert len(batch.rejects) == len(records) and batch.events.height == 0
        assert_no_secret(batch.rejects)
    # every cut of an oversized record (the reject keeps a truncated, redacted prefix)
    unit = SECRET + ' "q" \\ \n'
    for pad in range(len(json.dumps(unit))):  # every alignment of the 4 KiB cut against the escapes
        rec = with_secret(good["minimal.json"], unit * 200).replace(b"acct_2", b"acct_2" + b"p" * pad)
        batch = decode_lines([rec], kafka_pos(), max_record_bytes=600)
        assert [r.reason for r in batch.rejects] == ["oversized"]
        assert_no_secret(batch.rejects)


def test_prompt_given_as_plain_string_is_redacted(good: dict[str, bytes]) -> None:
    """Off-contract ``"prompt": "<text>"`` (completions style) is still prompt text."""
    obj = json.loads(good["minimal.json"])
    obj["prompt"] = SECRET + " " + "z" * 40
    raw = json.dumps(obj).encode()
    for data in (raw, raw[:-20]):
        batch = decode_lines(data, file_pos("p"))
        assert len(batch.rejects) == 1
        assert_no_secret(batch.rejects)


def test_prompt_text_inside_an_envelope_is_redacted(good: dict[str, bytes]) -> None:
    """A wrapped event (a Kafka Connect style ``{"payload": {...}}``, a batch array) parses as JSON but
    keeps its prompt one level down: the dead-letter copy must not carry it (it did, verbatim)."""
    event = json.loads(with_secret(good["minimal.json"]))
    wrapped = [
        {"payload": event},
        {"schema": {"type": "struct"}, "payload": {"after": event}},
        {"events": [event, {"prompt": SECRET + " completions style"}]},
        [event],
        {"payload": json.loads(json.dumps({"a": [[{"b": event}]]}))},
    ]
    records = [json.dumps(w).encode() for w in wrapped]
    for data in (b"\n".join(records), records):
        batch = decode_lines(data, file_pos("wrapped.jsonl"))
        assert len(batch.rejects) == len(records) and batch.events.height == 0
        assert_no_secret(batch.rejects)
    # deeper than Python's default recursion limit allows a recursive walk (orjson parses up to 1024)
    deep = b"[" * 1000 + json.dumps(event).encode() + b"]" * 1000
    assert orjson.loads(deep) and SECRET.encode() not in summarize(deep)
    # the structure is kept for debugging, not the content
    out = json.loads(summarize(records[0]))
    assert out["unknown_fields"] == 1 and out["fields"] == {} and len(out["sha256"]) == 64


def test_deeply_nested_record_is_rejected_not_fatal(good: dict[str, bytes]) -> None:
    """orjson reads 1024 levels but writes only 254: redacting such a record raised TypeError and took
    down the whole batch (the daemon would stop on the same offset every restart)."""
    event = json.loads(with_secret(good["minimal.json"]))
    del event["account_id"]
    nested = json.dumps(event)[:-1].encode() + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    plain = json.dumps({"prompt": SECRET + " completions style"})[:-1].encode() + b', "x": ' + b"[" * 300
    plain += b"]" * 300 + b"}"
    records = [nested, plain, good["minimal.json"]]
    for data in (b"\n".join(records), records):
        batch = decode_lines(data, file_pos("deep.jsonl"))
        assert [r.reason for r in batch.rejects] == ["missing_field", "type_error"]  # prompt not an object
        assert batch.events.height == 1
        assert_no_secret(batch.rejects)


def test_dead_letter_payload_is_structural() -> None:
    obj = {
        "request_id": "r",
        "account_id": "acct_1",
        "prompt": {"text": SECRET, "turns": 2, "content": SECRET},
        "usage": {"input_tokens": 1},
        "messages": [{"content": SECRET}],
        SECRET: 1,
    }
    raw = json.dumps(obj).encode()
    out = json.loads(summarize(raw))
    assert out["metadata"] == {"request_id": "r", "account_id": "acct_1"}
    assert out["fields"]["prompt.text"] == {"type": "string", "len": len(SECRET)}
    assert out["fields"]["prompt"] == {"type": "object", "len": 3}
    assert out["unknown_fields"] == 3  # prompt.content, messages and the key made of text: counted only
    assert out["bytes"] == len(raw) and SECRET not in json.dumps(out)
    # truncated / invalid JSON: size and hash only
    for cut in (raw[:40], raw[:-1], b"\xff" + raw, b"x\x9c" + raw):
        red = json.loads(summarize(cut))
        assert red["json"] == "unparsable" and set(red) == {"bytes", "sha256", "json"}


# --------------------------------------------------------------------------------------------------
# Big batches (bisection)
# --------------------------------------------------------------------------------------------------
def test_big_batch_keeps_every_good_row(
    good: dict[str, bytes], bad: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 20_000
    template = json.loads(good["full.json"])
    lines: list[bytes] = []
    for i in range(n):
        template["request_id"] = f"req_{i}"
        template["usage"]["input_tokens"] = i
        lines.append(json.dumps(template).encode())
    inserts = {5: "not_json.txt", 12_345: "string_tokens.json", n + 1: "not_object.json", 777: "bad_ip.json"}
    for at in sorted(inserts):  # ascending: each insert shifts the later ones, as intended
        lines.insert(at, bad[inserts[at]])
    parses = 0
    real_parse = decode_module._parse

    def counting_parse(data: bytes | Path) -> pl.DataFrame:
        nonlocal parses
        parses += 1
        return real_parse(data)

    monkeypatch.setattr(decode_module, "_parse", counting_parse)
    batch = decode_lines(b"\n".join(lines) + b"\n", file_pos("big.jsonl"))
    # bisection, not a per-line fallback: O(bad * log n) parses
    assert 1 < parses < 4 * 2 * (n.bit_length() + 1)
    check_invariants(batch)
    assert batch.records == n + len(inserts)
    assert batch.events.height == n
    assert batch.events["request_id"].to_list() == [f"req_{i}" for i in range(n)]
    assert batch.events["input_tokens"].to_list() == list(range(n))
    good_pos = [i for i in range(len(lines)) if i not in inserts]
    assert batch.events["_pos"].to_list() == good_pos
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [
        (f"big.jsonl:{at + 1}", *EXPECTED_BAD[inserts[at]]) for at in sorted(inserts)
    ]


# --------------------------------------------------------------------------------------------------
# Parquet / structured frames
# --------------------------------------------------------------------------------------------------
def _to_parquet(rows: list[dict[str, Any]], path: Path, schema: pa.Schema | None = None) -> pl.DataFrame:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return pl.read_parquet(path)


def test_parquet_round_trip_matches_json_lines(good: dict[str, bytes], tmp_path: Path) -> None:
    rows = [json.loads(raw) for raw in good.values()]
    frame = _to_parquet(rows, tmp_path / "good.parquet")
    assert isinstance(frame.schema["client"], pl.Struct) and isinstance(frame.schema["params"], pl.Struct)
    from_parquet = decode_frame(frame, file_pos(str(tmp_path / "good.parquet")))
    from_lines = decode_lines(b"\n".join(good.values()), file_pos("good.jsonl"))
    check_invariants(from_parquet)
    assert not from_parquet.rejects and from_parquet.records == len(rows)
    assert_frame_equal(from_parquet.events, from_lines.events)


def test_parquet_with_native_timestamps(good: dict[str, bytes], tmp_path: Path) -> None:
    """``ts`` / ``account.created_at`` as timezone-aware Parquet timestamps (any zone, any unit)."""
    rows = [json.loads(raw) for raw in good.values()]
    frame = _to_parquet(rows, tmp_path / "g.parquet").with_columns(
        pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="Asia/Singapore", time_unit="ms"),
        pl.col("account").struct.with_fields(
            pl.field("created_at").str.to_datetime(time_zone="America/New_York", time_unit="ns")
        ),
    )
    path = tmp_path / "typed.parquet"
    frame.write_parquet(path)
    typed = pl.read_parquet(path)
    assert isinstance(typed.schema["ts"], pl.Datetime) and typed.schema["ts"].time_zone is not None
    batch = decode_frame(typed, file_pos(str(path)))
    from_lines = decode_lines(b"\n".join(good.values()), file_pos("good.jsonl"))
    assert not batch.rejects
    assert_frame_equal(batch.events, from_lines.events)


def test_parquet_missing_optional_fields_and_columns(tmp_path: Path) -> None:
    rows = [
        {
            "schema_version": 1,
            "request_id": "p1",
            "ts": "2026-02-10T12:00:00Z",
            "account_id": "a",
            "model": "m",
            "client": {"ip": "192.0.2.1"},
            "usage": {"input_tokens": 5, "output_tokens": 6},
            "account": {"tier": "free"},
        },
        {
            "schema_version": 1,
            "request_id": "p2",
            "ts": "2026-02-10T12:00:01Z",
            "account_id": "b",
            "model": "m",
            "client": {"ip": "192.0.2.2"},
            "usage": {"input_tokens": -1, "output_tokens": 6},
            "account": None,
        },
        {
            "schema_version": 1,
            "request_id": "p3",
            "ts": "2026-02-10T12:00:02Z",
            "account_id": "c",
            "model": "m",
            "client": {"ip": "2001:db8::2"},
            "usage": {"input_tokens": 0, "output_tokens": 0},
            "account": {"tier": None},
        },
    ]
    frame = _to_parquet(rows, tmp_path / "sparse.parquet")
    assert "params" not in frame.columns and {f.name for f in frame.schema["client"].fields} == {"ip"}
    batch = decode_frame(frame, file_pos("sparse.parquet"))
    check_invariants(batch)
    assert batch.events["request_id"].to_list() == ["p1", "p3"]
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [
        ("sparse.parquet:2", "invalid_value", "usage.input_tokens")
    ]
    e = batch.events
    assert e["tier"].to_list() == ["free", None]
    for col in ("user_agent", "max_tokens", "prompt_text", "stop_reason", "reasoning_tokens", "org_id"):
        assert e[col].null_count() == e.height, col
    # conform() alone fills every RAW_SCHEMA column
    conformed = conform(frame)
    assert conformed.drop("_fail").schema == RAW_SCHEMA and conformed["_fail"].null_count() == frame.height


def test_parquet_reject_raw_is_redacted(good: dict[str, bytes], tmp_path: Path) -> None:
    rows = [json.loads(with_secret(good["full.json"])), json.loads(with_secret(good["minimal.json"]))]
    rows[1]["usage"]["output_tokens"] = -3
    batch = decode_frame(_to_parquet(rows, tmp_path / "s.parquet"), file_pos("s.parquet"))
    assert [(r.position, r.field) for r in batch.rejects] == [("s.parquet:2", "usage.output_tokens")]
    assert_no_secret(batch.rejects)
    assert json.loads(batch.rejects[0].raw)["metadata"]["request_id"] == "req_0002"


def test_parquet_naive_timestamps_reject_rows(good: dict[str, bytes], tmp_path: Path) -> None:
    """Issue 14 (8): a naive Parquet timestamp aborted the replay; now each such row is a reject."""
    rows = [json.loads(raw) for raw in good.values()]
    frame = _to_parquet(rows, tmp_path / "g.parquet")
    naive_ts = frame.with_columns(
        pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z").dt.replace_time_zone(None)
    )
    assert naive_ts.schema["ts"] == pl.Datetime("us", None)
    batch = decode_frame(naive_ts, file_pos("naive.parquet"))
    check_invariants(batch)
    assert batch.events.height == 0 and {(r.reason, r.field) for r in batch.rejects} == {
        ("invalid_value", "ts")
    }
    assert "naive" in batch.rejects[0].detail
    naive_created = frame.with_columns(
        pl.col("account").struct.with_fields(
            pl.field("created_at").str.to_datetime(time_zone="UTC").dt.replace_time_zone(None)
        )
    )
    batch = decode_frame(naive_created, file_pos("naive.parquet"))
    check_invariants(batch)
    with_created = [r for r in rows if (r.get("account") or {}).get("created_at")]
    assert len(batch.rejects) == len(with_created) and batch.events.height == len(rows) - len(with_created)
    assert {r.field for r in batch.rejects} == {"account.created_at"}


def test_parquet_wrong_column_types_reject_rows_one_by_one(tmp_path: Path) -> None:
    """Issue 14 (8): a wrong column type or one non-integer token count rejects rows, none vanish."""
    base = {
        "schema_version": [1, 1, 1],
        "request_id": ["r1", "r2", "r3"],
        "ts": ["2026-02-10T12:00:00Z"] * 3,
        "account_id": ["a", "b", "c"],
        "model": ["m"] * 3,
        "usage": [{"input_tokens": 1, "output_tokens": 1}] * 3,
    }
    wrong_client = pl.DataFrame({**base, "client": ["1.2.3.4", None, "1.2.3.5"]})
    batch = decode_frame(wrong_client, file_pos("wrong.parquet"))
    check_invariants(batch)
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [
        ("wrong.parquet:1", "type_error", "client"),
        ("wrong.parquet:2", "missing_field", "client.ip"),
        ("wrong.parquet:3", "type_error", "client"),
    ]
    ok_client = {"client": [{"ip": "1.2.3.4"}] * 3}
    fractional = pl.DataFrame(
        {**base, **ok_client, "usage": [{"input_tokens": t, "output_tokens": 1.0} for t in (1.0, 2.5, 3.0)]}
    )
    batch = decode_frame(fractional, file_pos("frac.parquet"))
    check_invariants(batch)
    assert batch.events["input_tokens"].to_list() == [1, 3]  # integral floats are integers, as in JSON
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [
        ("frac.parquet:2", "type_error", "usage.input_tokens")
    ]
    text_tokens = pl.DataFrame({**base, **ok_client, "status": ["200", None, "x"]})
    batch = decode_frame(text_tokens, file_pos("text.parquet"))
    check_invariants(batch)
    assert [r.position for r in batch.rejects] == ["text.parquet:1", "text.parquet:3"]
    assert batch.events["request_id"].to_list() == ["r2"]


# --------------------------------------------------------------------------------------------------
# Client IPs: the decoder accepts exactly what the contract's ipv4 / ipv6 formats accept
# --------------------------------------------------------------------------------------------------
IPS = [
    "1.2.3.4",
    "0.0.0.0",
    "255.255.255.255",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3",
    "1.2.3.4.5",
    " 1.2.3.4",
    "\u0663.2.3.4",
    "1.2.3.\u0664",
    "::",
    "::1",
    "1::",
    "2001:db8::1",
    "FE80::1",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1::2::3",
    "12345::",
    ":1:2::",
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "1::1.2.3.4",
    "1:2::3:1.2.3.4",
    "64:ff9b::1:192.0.2.33",
    "::1:2:3:4:5:1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::ffff:01.2.3.4",
    "::ffff:\u0663.2.3.4",
    "fe80::1%eth0",
    "abcd",
    "g::1",
]


def test_client_ip_acceptance_matches_the_contract() -> None:
    checker = jsonschema.FormatChecker()
    template = {
        "schema_version": 1,
        "ts": "2026-02-10T12:00:00Z",
        "account_id": "a",
        "model": "m",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    lines = [
        json.dumps({**template, "request_id": f"r{i}", "client": {"ip": ip}}).encode()
        for i, ip in enumerate(IPS)
    ]
    batch = decode_lines(b"\n".join(lines), file_pos("ips"))
    accepted = {IPS[int(r[1:])] for r in batch.events["request_id"]}
    contract = {ip for ip in IPS if checker.conforms(ip, "ipv4") or checker.conforms(ip, "ipv6")}
    assert accepted == contract, {"decoder only": accepted - contract, "contract only": contract - accepted}
    assert all(r.field == "client.ip" for r in batch.rejects)


# --------------------------------------------------------------------------------------------------
# Property-style: any subset, any order
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_random_subsets_and_orders(seed: int, good: dict[str, bytes], bad: dict[str, bytes]) -> None:
    rng = random.Random(seed)
    pool = [*good.items(), *bad.items()]
    items = rng.sample(pool, rng.randint(1, len(pool)))
    if seed % 2:  # with repeats: redeliveries of good records are duplicates, repeated bad ones rejects
        items += rng.choices(pool, k=rng.randint(1, 5))
        rng.shuffle(items)
    buf, where = build_buffer(items, rng)
    n_good = sum(1 for name, _ in items if name in good)
    n_bad = len(items) - n_good
    for data, pos in ((buf, file_pos("r.jsonl")), ([raw for _, raw in items], kafka_pos())):
        batch = decode_lines(data, pos)
        check_invariants(batch)
        assert batch.records == len(items)
        assert batch.events.height + batch.duplicates == n_good
        assert batch.events.height == len({name for name, _ in items if name in good})
        assert len(batch.rejects) == n_bad
        assert sorted((r.reason, r.field) for r in batch.rejects) == sorted(
            EXPECTED_BAD[name] for name, _ in items if name in bad
        )
    lines_of_bad = sorted(f"r.jsonl:{ln}" for name in where if name in bad for ln in where[name])
    assert sorted(r.position for r in decode_lines(buf, file_pos("r.jsonl")).rejects) == lines_of_bad


@pytest.mark.parametrize("seed", range(16))
def test_kafka_values_as_one_buffer_decode_as_record_by_record(
    seed: int, good: dict[str, bytes], bad: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values that each open with ``{`` are decoded as one JSON Lines buffer: events, rejects (reason,
    field, detail, position, payload, index), duplicates and counts as the per-record path gives them,
    also where polars refuses the buffer (a typed key holding a string) and the per-record path bisects."""
    rng = random.Random(seed)
    pool = [raw for raw in (*good.values(), *bad.values()) if raw.startswith(b"{")]
    values = rng.choices(pool, k=rng.randint(1, 40))
    if seed % 2:
        path, wrong = WRONG_TYPED[seed // 2 % len(WRONG_TYPED)]
        values.insert(rng.randrange(len(values) + 1), _with_value(good["full.json"], path, wrong, f"w{seed}"))
    assert decode_module._one_buffer(values, MAX_RECORD_BYTES) is not None
    parses: list[int] = []
    parse = decode_module._parse
    monkeypatch.setattr(decode_module, "_parse", lambda recs: parses.append(len(recs)) or parse(recs))
    one = decode_lines(values, kafka_pos())
    assert len(values) not in parses  # the refused buffer is not parsed again whole
    monkeypatch.setattr(decode_module, "_one_buffer", lambda v, limit: None)
    each = decode_lines(values, kafka_pos())
    check_invariants(one)
    assert_frame_equal(one.events, each.events)
    assert one.rejects == each.rejects and len(one.rejects) >= seed % 2
    assert (one.duplicates, one.records) == (each.duplicates, each.records)


#: Hostile pieces for values that open with ``{`` (no newline, no BOM: the one-buffer path's own cases).
_PIECES = [
    b"\r",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\\",
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b" ",
    b"\t",
    b"\x0b",
    b",",
    b":",
]
_PIECES += [b"\\u0000", b"\\ud800", b"\xe2\x80\xa8", b"1e999", b"NaN", b'"status":"x"', b'"request_id":"r"']


def _both_paths(values: list[bytes]) -> tuple[DecodedBatch, DecodedBatch]:
    """``values`` decoded as one buffer and record by record (``_one_buffer`` patched out)."""
    assert decode_module._one_buffer(values, MAX_RECORD_BYTES) is not None
    one = decode_lines(values, kafka_pos())
    original = decode_module._one_buffer
    decode_module._one_buffer = lambda v, limit: None
    try:
        return one, decode_lines(values, kafka_pos())
    finally:
        decode_module._one_buffer = original


#: A whole record's hostile variants (``raw``: the record, without its closing brace in ``head``).
_HOSTILE: dict[str, Callable[[bytes, bytes], bytes]] = {
    "carriage return": lambda raw, head: raw + b"\r",
    "carriage returns inside": lambda raw, head: head + b"\r\r}",
    "NUL": lambda raw, head: raw + b"\0",
    "invalid UTF-8 in a value": lambda raw, head: head + b',"x":"\xff\xfe"}',
    "invalid UTF-8 in a key": lambda raw, head: head + b',"\xc3":1}',
    "two objects on one line": lambda raw, head: raw + raw,
    "two objects and a space": lambda raw, head: raw + b" " + raw,
    "brace and white space": lambda raw, head: b"{ \t\r ",
    "brace alone": lambda raw, head: b"{",
    "a trailing backslash": lambda raw, head: raw + b"\\",
    "a string ending in a backslash": lambda raw, head: head + b',"x":"a\\',
    "a duplicate key": lambda raw, head: head + b',"account_id":"other"}',
    "a long value": lambda raw, head: head + b',"x":"' + b"y" * (MAX_RECORD_BYTES - len(raw) - 9) + b'"}',
    "an unterminated string": lambda raw, head: head + b',"x":"abc',
    "a line separator": lambda raw, head: raw + "\u2028".encode(),
}


@pytest.mark.parametrize("kind", sorted(_HOSTILE))
@pytest.mark.parametrize("where", [0, 1, 3])
def test_a_hostile_kafka_value_decodes_alike_on_both_paths(
    kind: str, where: int, good: dict[str, bytes]
) -> None:
    """One hostile value among whole records (first, second, last): the one buffer gives the events,
    rejects (reason, field, detail, position, payload), duplicates and counts the per-record path gives
    (review, round 19)."""
    whole = [raw for raw in good.values() if raw.startswith(b"{")][:3]
    values = [_with_value(good["full.json"], "request_id", f'"h{i}"', f"h{i}") for i in range(3)] + whole
    raw = values[where]
    values[where] = _HOSTILE[kind](raw, raw[: raw.rindex(b"}")])
    one, each = _both_paths(values)
    assert_frame_equal(one.events, each.events)
    assert one.rejects == each.rejects
    assert (one.duplicates, one.records) == (each.duplicates, each.records)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_kafka_values_decode_alike_on_both_paths(
    data: st.DataObject, good: dict[str, bytes], bad: dict[str, bytes]
) -> None:
    """Values that open with ``{`` but hold a carriage return, a NUL, invalid UTF-8, two objects on one
    line, a lone ``{`` with white space, a trailing backslash, a duplicate key, a truncation: the one
    buffer gives the events, rejects, duplicates and counts the per-record path gives (review, round 19)."""
    whole = sorted(r for r in (*good.values(), *bad.values()) if r.startswith(b"{"))
    piece = st.one_of(st.sampled_from(_PIECES), st.sampled_from(whole), st.binary(max_size=12))
    value = st.one_of(
        st.sampled_from(whole),
        st.lists(piece, max_size=6).map(lambda ps: b"{" + b"".join(ps)),
        st.tuples(st.sampled_from(whole), st.integers(1, 600), st.lists(piece, max_size=3)).map(
            lambda t: t[0][: t[1]] + b"".join(t[2])
        ),
        st.tuples(st.sampled_from(whole), st.lists(piece, min_size=1, max_size=2)).map(
            lambda t: t[0] + b"".join(t[1])  # a whole record and a tail: two objects, a backslash, a CR
        ),
        st.tuples(st.sampled_from(whole), st.floats(0, 1), piece).map(
            lambda t: t[0][: max(1, int(t[1] * len(t[0])))] + t[2] + t[0][max(1, int(t[1] * len(t[0]))) :]
        ),
    )
    # mostly whole records, so that polars accepts the buffer as often as it refuses it
    values = data.draw(st.lists(st.sampled_from(whole), max_size=8))
    for v in data.draw(st.lists(value, min_size=1, max_size=2)):
        values.insert(data.draw(st.integers(0, len(values))), v)
    values = [v for v in values if b"\n" not in v]
    values = [v for v in values if BOM not in v]
    if decode_module._one_buffer(values, MAX_RECORD_BYTES) is None:
        return
    one, each = _both_paths(values)
    assert_frame_equal(one.events, each.events)
    assert one.rejects == each.rejects
    assert (one.duplicates, one.records) == (each.duplicates, each.records)


# --------------------------------------------------------------------------------------------------
# A typed key holding another JSON type: polars refuses the whole batch for one such record
# --------------------------------------------------------------------------------------------------
#: (key path, JSON text of a value of another type) for number, boolean and object keys.
WRONG_TYPED: list[tuple[str, str]] = [
    ("status", '"200"'),
    ("latency_ms", "[1]"),
    ("schema_version", '{"v": 1}'),
    ("usage.input_tokens", '"5"'),
    ("params.stream", '"yes"'),
    ("account.verified", "[true]"),
    ("client", '"1.2.3.4"'),
    ("prompt", '["x"]'),
    ("usage.output_tokens", "1.0"),  # an integral float: the contract's integer, polars refuses it
    ("params.max_tokens", "99999999999999999999"),  # beyond 64 bits
]


def _with_value(raw: bytes, path: str, value: str, rid: str) -> bytes:
    obj = json.loads(raw)
    obj["request_id"] = rid
    *parents, leaf = path.split(".")
    node = obj
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = "\0"  # a placeholder, replaced by the JSON text below
    return json.dumps(obj).replace('"\\u0000"', value).encode()


def test_typed_keys_holding_other_types_decode_as_each_record_alone(
    good: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = good[sorted(good)[0]]
    values: list[bytes] = []
    odd: dict[int, bytes] = {}
    for i in range(1200):
        if i % 41 == 40:
            path, value = WRONG_TYPED[(i // 41) % len(WRONG_TYPED)]
            odd[i] = _with_value(base, path, value, f"req_{i}")
            values.append(odd[i])
        else:
            values.append(_with_value(base, "request_id", f'"req_{i}"', f"req_{i}"))
    assert len({path for path, _ in WRONG_TYPED}) == len(WRONG_TYPED) <= len(odd)
    parses = 0
    real_parse = decode_module._parse

    def counted(records: Any) -> pl.DataFrame | None:
        nonlocal parses
        parses += 1
        return real_parse(records)

    monkeypatch.setattr(decode_module, "_parse", counted)
    batch = decode_lines(values, kafka_pos())
    check_invariants(batch)
    # the refused batch, the batch less the suspects, the strict re-reading: not a bisection
    assert parses <= 4, parses
    monkeypatch.setattr(decode_module, "_parse", real_parse)
    alone = {i: decode_lines([raw], kafka_pos(base=1000 + i)) for i, raw in odd.items()}
    expected_events = sorted(
        [f"req_{i}" for i in range(len(values)) if i not in odd]
        + [f"req_{i}" for i, b in alone.items() if b.events.height]
    )
    assert sorted(batch.events["request_id"].to_list()) == expected_events
    assert [(r.reason, r.field, r.detail, r.position, r.raw) for r in batch.rejects] == [
        (r.reason, r.field, r.detail, r.position, r.raw) for i in sorted(alone) for r in alone[i].rejects
    ]
    assert {r.reason for r in batch.rejects} == {"type_error", "invalid_value"}
    assert len(batch.rejects) >= len(odd) - len(odd) // len(WRONG_TYPED) - 1  # the 1.0s are accepted


def test_escaped_keys_are_found_among_lines_with_other_backslashes(good: dict[str, bytes]) -> None:
    """Escaped keys and surrogates are looked for in the lines holding a backslash only: the flags must
    land on the right lines, wherever the others are."""
    base = good[sorted(good)[0]]
    values: list[bytes] = []
    for i in range(300):
        text = '"line one\\nline \\"two\\""' if i % 3 else '"plain"'  # a backslash that is no suspect
        raw = _with_value(base, "prompt.text", text, f"req_{i}")
        assert (b"\\" in raw) == bool(i % 3)
        if i % 29 == 7:  # the key written twice, once escaped: a strict reader sees the duplicate
            raw = raw[:-1] + b', "acc\\u006funt_id": "other"}'
        if i % 31 == 11:  # a lone surrogate: not JSON to a strict reader
            raw = raw[:-1] + b', "x": "\\ud800"}'
        values.append(raw)
    batch = decode_lines(values, kafka_pos())
    check_invariants(batch)
    got = [(r.index, r.reason, r.field) for r in batch.rejects]
    want = sorted(
        [(i, "duplicate_key", "account_id") for i in range(300) if i % 29 == 7]
        + [(i, "not_json", None) for i in range(300) if i % 31 == 11 and i % 29 != 7]
    )
    assert got == want
    assert batch.events.height == 300 - len(want)
