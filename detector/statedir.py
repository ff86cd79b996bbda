"""The state directory on disk: checkpoint folders that prove themselves, kept two deep.

Layout under a root folder::

    root/CURRENT                   -> name of the live checkpoint folder (replaced atomically)
    root/ckpt-000042-9f2c1a7b/     -> a checkpoint: its files and manifest.json (written last)
    root/ckpt-000041-0be3a1c2/     -> the one before it, kept to fall back to
    root/damaged-ckpt-000040-.../  -> a checkpoint that failed verification, set aside (never read)
    root/discarded-<UTC time>/     -> what ``detector run --reset-state`` moved aside

**Writing** (``write_folder``): the files go into ``.tmp-ckpt-<seq>-<random>/`` in the same root, then
``manifest.json`` (every file with its size and SHA-256), then everything is fsynced, the folder is
renamed to ``ckpt-<seq>-<random>``, and ``CURRENT`` is switched to it (write, fsync, ``os.replace``).
Any error on the way (``OSError``: read-only, ENOSPC, EFBIG; polars' ``ComputeError`` wrapping one;
anything else) removes the temporary (or renamed, not yet current) folder and raises
``CheckpointWriteError``: a failed write leaves nothing behind. After the switch, complete folders
with a lower sequence number are removed except the previous checkpoint (the one ``CURRENT`` named
before, or if that is gone the newest older folder); folders with a higher number (a racing
writer's) are never touched.

**Reading** (``choose``): a checkpoint is a folder whose manifest parses and matches its files exactly
(the same names, sizes and hashes); anything else is not a checkpoint. ``CURRENT``'s folder is tried
first, then the older complete folders, newest first. ``Choice.skipped`` lists what was passed over
(a fallback, which the caller logs and counts); with no good folder but some state present the caller
refuses to start (``NoGoodCheckpoint``) rather than read the input from the beginning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detector.errors import DetectorError

MANIFEST = "manifest.json"
POINTER = "CURRENT"
PREFIX = "ckpt-"
TMP = ".tmp-"
DAMAGED = "damaged-"
#: Checkpoint folders kept after a switch: the current one and the previous one, so that one damaged
#: checkpoint (a bad disk block, a file deleted by hand) costs one commit interval of re-reading, not
#: the whole state. Each kept folder costs one state's worth of disk.
KEEP = 2
#: Damaged folders set aside for inspection, newest first; older ones are removed.
KEEP_DAMAGED = 2
#: Hash of every file in the manifest (``hashlib`` name).
ALGORITHM = "sha256"
MANIFEST_FORMAT = 1


class CheckpointError(DetectorError, ValueError):
    """A checkpoint this build cannot read (the message names the folder)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (the cause is chained); nothing was left behind."""


class NoGoodCheckpoint(CheckpointError):
    """State existed, but no checkpoint in the state directory verifies: refusing to start over."""

    exit_code = 7


@dataclass
class Choice:
    """What ``choose`` found: the folder to load (None: none good) and what it passed over."""

    folder: Path | None
    #: ``(name, problem)`` of each candidate passed over before ``folder``, newest first
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: ``CURRENT`` or a complete checkpoint folder exists (the state directory is not fresh)
    present: bool = False


# ---------------------------------------------------------------------------------------------- names
def seq_of(name: str) -> int:
    """The sequence number in ``ckpt-<seq>-<suffix>`` (``ckpt-<seq>`` from older builds); 0 if none."""
    try:
        return int(name.removeprefix(TMP).split("-")[1])
    except (IndexError, ValueError):
        return 0


def folders(root: Path) -> list[Path]:
    """Complete checkpoint folders (renamed from their temporary name), newest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.glob(f"{PREFIX}*") if p.is_dir()), key=lambda p: -seq_of(p.name))


def pointer(root: Path) -> str | None:
    """The folder name ``CURRENT`` holds (None: no pointer, or one that cannot be read)."""
    try:
        name = (root / POINTER).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name or None


def present(root: Path) -> bool:
    """``CURRENT`` or a complete checkpoint folder exists: some state was written here."""
    return (root / POINTER).exists() or bool(folders(root))


# ------------------------------------------------------------------------------------------- manifest
def _digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, ALGORITHM).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest(folder: Path) -> dict[str, Any] | str:
    """The parsed manifest, or what is wrong with it."""
    try:
        doc = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({type(exc).__name__})"
    if (
        not isinstance(doc, dict)
        or doc.get("algorithm") != ALGORITHM
        or not isinstance(doc.get("files"), dict)
    ):
        return "malformed manifest"
    return doc


def verify(folder: Path, only: tuple[str, ...] | None = None) -> str | None:
    """What is wrong with ``folder`` as a checkpoint (None: it verifies).

    The folder must hold exactly the files its manifest lists, each with the listed size and hash.
    ``only``: check just these files' sizes and hashes (still every name), e.g. ``meta.json`` for a
    cheap look at the offsets; a full check reads every byte once.
    """
    doc = _manifest(folder)
    if isinstance(doc, str):
        return doc
    listed: dict[str, Any] = doc["files"]
    try:
        actual = {p.name for p in folder.iterdir()} - {MANIFEST}
    except OSError as exc:
        return f"unreadable folder ({type(exc).__name__})"
    if missing := sorted(set(listed) - actual):
        return f"missing {', '.join(missing)}"
    if extra := sorted(actual - set(listed)):
        return f"not in the manifest: {', '.join(extra)}"
    for name in sorted(listed) if only is None else only:
        entry = listed.get(name)
        if not isinstance(entry, dict):
            return f"{name}: not in the manifest"
        path = folder / name
        try:
            size = path.stat().st_size
            if size != entry.get("size"):
                return f"{name}: {size} bytes, the manifest says {entry.get('size')}"
            if _digest(path) != entry.get(ALGORITHM):
                return f"{name}: checksum mismatch"
        except OSError as exc:
            return f"{name}: unreadable ({type(exc).__name__})"
    return None


# ---------------------------------------------------------------------------------------------- write
def seal(folder: Path) -> None:
    """Write ``folder``'s manifest (every other file's size and hash), fsyncing the files, the manifest
    and the folder. ``write_folder`` calls it last; a deliberate rewrite of a checkpoint (a migration,
    a test making an older build's checkpoint) calls it again."""
    files = {}
    for f in sorted(p for p in folder.iterdir() if p.name != MANIFEST):
        files[f.name] = {"size": f.stat().st_size, ALGORITHM: _digest(f)}
        _fsync(f)
    manifest = {"format": MANIFEST_FORMAT, "algorithm": ALGORITHM, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
    _fsync(folder / MANIFEST)
    _fsync(folder)


def write_folder(root: Path, fill: Callable[[Path], None]) -> Path:
    """A new checkpoint: ``fill`` writes its files into a fresh folder; manifest, fsync, rename, switch.

    Returns the new current folder. Raises ``CheckpointWriteError`` (nothing left behind) on any error.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        # one above the current checkpoint (a racing writer's newer folder is left alone); with no
        # readable pointer, one above every folder
        before = pointer(root)
        seq = seq_of(before or "") or max((seq_of(p.name) for p in folders(root)), default=0)
        seq += 1
    except OSError as exc:
        raise CheckpointWriteError(f"cannot write a checkpoint: {exc}", str(root)) from exc
    name = f"{PREFIX}{seq:06d}-{secrets.token_hex(4)}"
    tmp, final = root / f"{TMP}{name}", root / name
    try:
        tmp.mkdir()
        fill(tmp)
        seal(tmp)
        tmp.rename(final)
        _fsync(root)
        staged = root / f"{POINTER}.tmp"
        staged.write_text(name)
        _fsync(staged)
        os.replace(staged, root / POINTER)
        _fsync(root)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if pointer(root) != name:
            shutil.rmtree(final, ignore_errors=True)
        # not a file we staged (or the directory is read-only): nothing of ours to remove
        with contextlib.suppress(OSError):
            (root / f"{POINTER}.tmp").unlink(missing_ok=True)
        raise CheckpointWriteError(
            f"cannot write a checkpoint ({type(exc).__name__}: {exc}); nothing was left behind", str(root)
        ) from exc
    prune(root, seq, before)
    return final


def prune(root: Path, seq: int, previous: str | None) -> None:
    """After switching to checkpoint ``seq``: drop the complete folders with a lower number except the
    previous checkpoint (``previous``, the name ``CURRENT`` held before; if that folder is gone, the
    newest older one), crashed writes' temporary folders, and damaged folders beyond ``KEEP_DAMAGED``.
    A folder that was renamed but never made current (a crash between the two) is dropped too."""
    older = [p for p in folders(root) if seq_of(p.name) < seq]
    kept = [p for p in older if p.name == previous] or older[: KEEP - 1]
    for old in older:
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(f"{TMP}{PREFIX}*"):
        if seq_of(tmp.name) <= seq:  # a crashed write had the same number as this one
            shutil.rmtree(tmp, ignore_errors=True)
    damaged = sorted(root.glob(f"{DAMAGED}*"), key=lambda p: -seq_of(p.name.removeprefix(DAMAGED)))
    for old in damaged[KEEP_DAMAGED:]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- read
def choose(root: Path, only: tuple[str, ...] | None = None) -> Choice:
    """The newest checkpoint under ``root`` that verifies (``verify(folder, only)``): ``CURRENT``'s
    folder, else the older complete folders, newest first. Never raises; see ``Choice``."""
    choice = Choice(None, present=present(root))
    named = pointer(root)
    if named is not None and Path(named).name != named:
        named = "?"  # not a folder name: treated as dangling
    if named is not None and named.startswith(PREFIX) and (root / named).is_dir():
        candidates = [root / named] + [p for p in folders(root) if seq_of(p.name) < seq_of(named)]
    elif named is not None:  # dangling: older folders only (a newer one was never made current)
        choice.skipped.append((named[:80], "missing (CURRENT points at it)"))
        candidates = [p for p in folders(root) if not seq_of(named) or seq_of(p.name) < seq_of(named)]
    else:
        candidates = folders(root)
        if candidates:
            choice.skipped.append((POINTER, "missing"))
    for folder in candidates:
        problem = verify(folder, only)
        if problem is None:
            choice.folder = folder
            return choice
        choice.skipped.append((folder.name, problem))
    return choice


def set_aside(root: Path, names: list[str]) -> list[str]:
    """Rename damaged checkpoint folders to ``damaged-<name>`` (kept for inspection, never read again);
    returns the new names (a read-only directory keeps them where they are)."""
    moved = []
    for name in names:
        folder = root / name
        if name.startswith(PREFIX) and folder.is_dir():
            try:
                folder.rename(root / f"{DAMAGED}{name}")
                moved.append(f"{DAMAGED}{name}")
            except OSError:
                pass
    return moved


def reset(root: Path) -> Path | None:
    """``--reset-state``: move everything in ``root`` into ``root/discarded-<UTC time>/``; the folder
    moved to (None: ``root`` was empty or missing)."""
    if not root.is_dir():
        return None
    items = [p for p in root.iterdir() if not p.name.startswith("discarded-")]
    if not items:
        return None
    aside = root / f"discarded-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    aside.mkdir()
    for p in items:
        p.rename(aside / p.name)
    _fsync(root)
    return aside
