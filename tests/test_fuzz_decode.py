"""Issue 14 fuzz: 100,000 generated records through replay and through the daemon's decode path.

Valid, truncated, mutated, wrong-typed and compression-magic-prefixed records, with 10,000 distinct
marker strings in prompt text, chat messages, unknown fields and keys. Checks: nothing raises; every
record is an event, a reject or a duplicate; no marker reaches any output (alerts, rejects, logs).
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest

from detector.app import build_engine
from detector.runtime.replay import replay
from detector.runtime.stream.decoding import decode_poll

ROOT = Path(__file__).resolve().parents[1]
N_RECORDS = 100_000
N_MARKERS = 10_000
MARKER_RE = re.compile(r"qzmark\d{5}")
MAGIC = [b"x^", b"x\x9c", b"x\xda", b"x\x01", b"\x1f\x8b\x08\x00", b"\x28\xb5\x2f\xfd", b"\xef\xbb\xbf"]
WRONG: list[Any] = [5, -1, 1.5, True, None, [], ["a"], {}, {"t": 1}, "", "x" * 200]


def _marker(rng: random.Random) -> str:
    return f"qzmark{rng.randrange(N_MARKERS):05d}"


def _valid(rng: random.Random, i: int) -> dict[str, Any]:
    m = _marker(rng)
    rec: dict[str, Any] = {
        "schema_version": 1,
        "request_id": f"req_{i if rng.random() > 0.02 else rng.randrange(max(i, 1))}",
        "ts": f"2026-02-10T{rng.randrange(12):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
        "account_id": f"acct_{rng.randrange(3000)}",
        "model": "frontier-large",
        "client": {"ip": f"198.51.{rng.randrange(256)}.{rng.randrange(256)}"},
        "usage": {"input_tokens": rng.randrange(5000), "output_tokens": rng.randrange(5000)},
        "prompt": {"text": f"please think step by step {m} and explain", "turns": 1},
    }
    extra = rng.randrange(4)
    if extra == 1:
        rec["messages"] = [{"role": "user", "content": _marker(rng)}]
    elif extra == 2:
        rec["input"] = _marker(rng)
    elif extra == 3:
        rec[_marker(rng)] = {"content": _marker(rng)}
    return rec


def generate(seed: int, n: int) -> tuple[list[bytes], set[str]]:
    """``n`` records (no newline inside any) and the markers they carry."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(n):
        rec = _valid(rng, i)
        kind = rng.random()
        if kind < 0.4:
            raw = json.dumps(rec).encode()
        elif kind < 0.55:  # truncated
            full = json.dumps(rec).encode()
            raw = full[: rng.randrange(1, len(full))]
        elif kind < 0.7:  # mutated bytes
            buf = bytearray(json.dumps(rec).encode())
            for _ in range(rng.randrange(1, 6)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            raw = bytes(buf)
        elif kind < 0.85:  # a field of the wrong type (or wrong value), maybe duplicated
            key = rng.choice(
                ["account_id", "request_id", "model", "ts", "usage", "client", "prompt", "status"]
            )
            rec[key] = rng.choice(WRONG)
            raw = json.dumps(rec).encode()
            if rng.random() < 0.2:
                raw = raw[:-1] + b', "account_id": "dup"}'
        else:  # compression magic (or a BOM) in front
            raw = rng.choice(MAGIC) + json.dumps(rec).encode()
        raw = raw.replace(b"\n", b" ").replace(b"\r", b" ")
        if not raw.strip():
            raw = b"{"
        out.append(raw)
    markers = set(MARKER_RE.findall(b"\n".join(out).decode("utf-8", "replace")))
    return out, markers


@pytest.mark.slow
def test_fuzz_replay_and_daemon_decode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    records, markers = generate(14, N_RECORDS)
    assert len(records) >= 100_000 and len(markers) > 9_000
    # replay
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    alerts, rejects = tmp_path / "alerts.jsonl", tmp_path / "rejects.jsonl"
    s = replay([path], build_engine(ROOT / "rules"), alerts, rejects)
    assert s.records == len(records)
    assert s.records == s.events + s.duplicates + sum(s.rejects.values())
    assert s.events > 0.3 * len(records) and sum(s.rejects.values()) > 0.3 * len(records)
    # the daemon's decode path, poll by poll (values may hold a newline there)
    events = rejected = dups = 0
    dead_letters: list[bytes] = []
    step = 2_000
    for start in range(0, len(records), step):
        values = [
            r if k % 97 else r[:10] + b"\n" + r[10:] for k, r in enumerate(records[start : start + step])
        ]
        offs = list(range(start, start + len(values)))
        batch = decode_poll("gateway-events", values, [0] * len(values), offs)
        assert batch.records == len(values)
        assert batch.events.height + batch.duplicates + len(batch.rejects) == len(values)
        assert "prompt_text" not in batch.events.columns
        events, rejected, dups = (
            events + batch.events.height,
            rejected + len(batch.rejects),
            dups + batch.duplicates,
        )
        dead_letters += [json.dumps(r.to_json_dict()).encode() + r.raw for r in batch.rejects]
    assert events + rejected + dups == len(records)
    # no marker in any output
    outputs = {
        "alerts": alerts.read_bytes(),
        "rejects": rejects.read_bytes(),
        "daemon dead letters": b"\n".join(dead_letters),
        "logs": caplog.text.encode(),
    }
    for name, blob in outputs.items():
        found = MARKER_RE.findall(blob.decode("utf-8", "replace"))
        assert not found, (name, found[:5])
        assert b"qzmark" not in blob, name
