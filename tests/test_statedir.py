"""The state directory without an engine: manifests catch every damage, the previous checkpoint is
kept and chosen when the current one is damaged, and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from detector.statedir import (
    KEEP,
    MANIFEST,
    CheckpointWriteError,
    choose,
    folders,
    pointer,
    reset,
    verify,
    write_folder,
)


def _fill(tag: str) -> Callable[[Path], None]:
    """What a checkpoint holds, in miniature: a state table, buffered events, the book, the meta."""

    def fill(folder: Path) -> None:
        (folder / "buckets.parquet").write_bytes(b"PAR1" + tag.encode() * 200 + b"PAR1")
        (folder / "pending.parquet").write_bytes(b"PAR1" + b"p" * 100 + b"PAR1")
        (folder / "book.json").write_text(json.dumps([{"alert_id": tag, "revision": 1}]))
        (folder / "meta.json").write_text(json.dumps({"format": 1, "extra": {"tag": tag}}))

    return fill


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "a state file missing": lambda f: (f / "buckets.parquet").unlink(),
    "pending.parquet deleted": lambda f: (f / "pending.parquet").unlink(),
    "an empty alert book": lambda f: (f / "book.json").write_text("[]"),
    "a truncated file": lambda f: _truncate(f / "meta.json"),
    "one bit flipped": lambda f: _flip(f / "buckets.parquet"),
    "a file not in the manifest": lambda f: (f / "seen.parquet").write_bytes(b"PAR1PAR1"),
    "no manifest": lambda f: (f / MANIFEST).unlink(),
    "a truncated manifest": lambda f: _truncate(f / MANIFEST),
}


def test_the_manifest_lists_every_file_with_size_and_hash(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, _fill("a"))
    doc = json.loads((folder / MANIFEST).read_text())
    assert set(doc["files"]) == {"buckets.parquet", "pending.parquet", "book.json", "meta.json"}
    assert doc["files"]["book.json"]["size"] == (folder / "book.json").stat().st_size
    assert all(len(e["sha256"]) == 64 for e in doc["files"].values())
    assert verify(folder) is None
    assert pointer(tmp_path) == folder.name


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damage_falls_back_to_the_previous_checkpoint(tmp_path: Path, damage: str) -> None:
    previous = write_folder(tmp_path, _fill("a"))
    current = write_folder(tmp_path, _fill("b"))
    DAMAGE[damage](current)
    assert verify(current) is not None
    choice = choose(tmp_path)
    assert choice.folder == previous and choice.present
    assert [name for name, _ in choice.skipped] == [current.name]


def test_only_the_current_and_the_previous_checkpoint_are_kept(tmp_path: Path) -> None:
    made = [write_folder(tmp_path, _fill(str(i))) for i in range(5)]
    assert folders(tmp_path) == made[::-1][:KEEP]
    assert pointer(tmp_path) == made[-1].name
    # a folder renamed but never made current (kill -9 between the rename and the switch) has the
    # next number, as the next write will (a racing writer's folder could too: left alone); it is
    # never read, and the write after next drops it, keeping the previous checkpoint
    orphan = tmp_path / f"ckpt-{int(made[-1].name.split('-')[1]) + 1:06d}-0rphan00"
    shutil.copytree(made[-1], orphan)
    assert choose(tmp_path).folder == made[-1]
    newer = write_folder(tmp_path, _fill("x"))
    assert choose(tmp_path).folder == newer
    newest = write_folder(tmp_path, _fill("y"))
    assert folders(tmp_path) == [newest, newer] and not orphan.exists()


def test_a_dangling_or_missing_pointer_falls_back(tmp_path: Path) -> None:
    previous = write_folder(tmp_path, _fill("a"))
    current = write_folder(tmp_path, _fill("b"))
    # the current folder deleted: CURRENT dangles, the one before it is taken
    for f in current.iterdir():
        f.unlink()
    current.rmdir()
    choice = choose(tmp_path)
    assert choice.folder == previous and choice.skipped[0][0] == current.name
    # CURRENT itself deleted: the newest folder that verifies
    (tmp_path / "CURRENT").unlink()
    choice = choose(tmp_path)
    assert choice.folder == previous and choice.skipped == [("CURRENT", "missing")]


def test_no_good_folder_but_state_present_is_told_apart_from_a_fresh_directory(tmp_path: Path) -> None:
    fresh = choose(tmp_path / "never-written")
    assert fresh.folder is None and not fresh.present
    only = write_folder(tmp_path, _fill("a"))
    size = (only / "book.json").stat().st_size
    (only / "book.json").write_text("[]")
    damaged = choose(tmp_path)
    assert damaged.folder is None and damaged.present
    assert damaged.skipped == [(only.name, f"book.json: 2 bytes, the manifest says {size}")]


def test_a_failed_write_leaves_no_folder(tmp_path: Path) -> None:
    """ENOSPC half-way through the files (injected in the fill; the only simulated error here)."""
    good = write_folder(tmp_path, _fill("a"))

    def full_disk(folder: Path) -> None:
        (folder / "buckets.parquet").write_bytes(b"x" * 10_000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointWriteError) as info:
        write_folder(tmp_path, full_disk)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", good.name]
    assert choose(tmp_path).folder == good


def test_a_failed_switch_removes_the_finished_folder(tmp_path: Path) -> None:
    """The folder is complete but ``CURRENT`` cannot be switched (a real OS error: the staging name is
    taken by a directory): the folder is removed, the old checkpoint stays current."""
    good = write_folder(tmp_path, _fill("a"))
    (tmp_path / "CURRENT.tmp").mkdir()
    with pytest.raises(CheckpointWriteError):
        write_folder(tmp_path, _fill("b"))
    assert [p.name for p in folders(tmp_path)] == [good.name] and pointer(tmp_path) == good.name
    assert not list(tmp_path.glob(".tmp-*"))


def test_crashed_writes_are_cleaned_up_by_the_next_one(tmp_path: Path) -> None:
    """``kill -9`` mid-write leaves a temporary folder; it is never read, and the next write removes it."""
    good = write_folder(tmp_path, _fill("a"))
    crashed = tmp_path / ".tmp-ckpt-000002-deadbeef"
    crashed.mkdir()
    (crashed / "buckets.parquet").write_bytes(b"PAR1")
    assert choose(tmp_path).folder == good
    write_folder(tmp_path, _fill("b"))
    assert not crashed.exists()


def test_reset_moves_everything_aside(tmp_path: Path) -> None:
    write_folder(tmp_path, _fill("a"))
    aside = reset(tmp_path)
    assert aside is not None and aside.name.startswith("discarded-")
    assert (aside / "CURRENT").exists()
    assert not choose(tmp_path).present
    assert reset(tmp_path) is None  # nothing left to move (the discarded folder stays)


def test_reset_state_acts_only_when_the_daemon_would_refuse(tmp_path: Path) -> None:
    """`--reset-state` left in a service definition must not wipe good state at the next restart; on a
    directory with no checkpoint that verifies it moves everything aside."""
    from detector.checkpoint import CheckpointFolder
    from detector.runtime.stream.settings import StreamSettings
    from detector.runtime.stream.statecheck import check_state

    settings = StreamSettings(bootstrap_servers="127.0.0.1:9", state_dir=tmp_path)  # never contacted
    good = write_folder(tmp_path, _fill("a"))
    assert check_state(CheckpointFolder(tmp_path), settings, reset=True) is False
    assert choose(tmp_path).folder == good
    (good / "book.json").write_text("[]")
    assert check_state(CheckpointFolder(tmp_path), settings, reset=True) is True
    assert not choose(tmp_path).present and len(list(tmp_path.glob("discarded-*/CURRENT"))) == 1
