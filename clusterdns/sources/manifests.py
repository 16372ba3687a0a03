"""Kubernetes manifests on disk as a source of objects, with hot reload.

Reads files or directories of YAML/JSON (multi-document, ``kind: List`` and
``*List`` kinds as ``kubectl get -o yaml`` prints them).  A file is applied
whole or not at all: a file with any error keeps the last good state it had
(nothing, at start-up), and the error names the file, the document, the
object and the field.

Hot reload is built to survive a bad day on disk:

* A file is applied only once it has stopped changing (same size, mtime and
  inode over a settle interval), so a file written in two steps is never served
  half-done.
* Files are listed, read and parsed on a worker thread; the event loop only
  commits the result, as one batch.
* A file over ``max_bytes`` is skipped with an error, without being read.
* A path named on the command line that vanishes (removed, or a symlink that
  now points nowhere) keeps the last good state of everything under it; the
  source reports it in :attr:`ManifestSource.missing` (``/ready`` says so) and
  picks the path up again, watch included, when it returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..events import Delete, Event, Sink, Synced, Upsert
from ..objects import KINDS, Key, KubeObject, ObjectError, read_object

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # --max-manifest-bytes
DEFAULT_SETTLE = 0.5  # seconds a changed file must stay unchanged before it is applied
ROOT_CHECK_INTERVAL = 0.5  # seconds between checks that the named paths are still the ones watched
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_SCALARS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:float")


class _Unusual(Exception):
    """A node the fast path leaves to PyYAML's own constructor (merge keys, timestamps, sets, unknown tags...)."""


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, with plain documents (maps, lists, strings, numbers, booleans) built in one tight pass.

    PyYAML's constructor goes through several generic calls per node; most of
    a big manifest load was spent there.  A document with anything else is
    built by the safe constructor itself, so values and errors are the same.
    """

    def construct_document(self, node):
        try:
            return self._plain(node, {})
        except _Unusual:
            return super().construct_document(node)

    def _plain(self, node, seen: dict[int, Any]) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _MAP:
            if id(node) in seen:  # an alias: the same object, as PyYAML gives
                return seen[id(node)]
            out: dict[Any, Any] = {}
            seen[id(node)] = out
            for key_node, value_node in node.value:
                key = self._plain(key_node, seen)
                if isinstance(key, (dict, list)) or key_node.tag not in (_STR, *_SCALARS):
                    raise _Unusual  # unhashable or merge key ('<<'): PyYAML says what is wrong
                out[key] = self._plain(value_node, seen)
            return out
        if tag == _SEQ:
            if id(node) in seen:
                return seen[id(node)]
            items: list[Any] = []
            seen[id(node)] = items
            items.extend(self._plain(item, seen) for item in node.value)
            return items
        if tag in _SCALARS:
            return self.yaml_constructors[tag](self, node)
        raise _Unusual


@dataclass
class FileResult:
    objects: dict[Key, KubeObject] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # kinds DNS does not use


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """Every manifest file named by ``paths``, directories walked recursively, sorted."""
    found = []
    for path in paths:
        if path.is_dir():
            found += [
                p
                for p in sorted(path.rglob("*"))
                if p.suffix in SUFFIXES and p.is_file() and not any(part.startswith(".") for part in p.parts[len(path.parts) :])
            ]
        elif path.is_file():
            found.append(path)
    return found


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> FileResult:
    result = FileResult()
    shown = display(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                result.errors.append(f"{shown}: {_size(size)} is over the limit of {_size(max_bytes)} "
                                     "(--max-manifest-bytes); skipped without reading it")
                return result
            data = f.read(max_bytes + 1)  # the file may grow after the check: never read past the limit
        if len(data) > max_bytes:
            result.errors.append(f"{shown}: grew past the limit of {_size(max_bytes)} (--max-manifest-bytes) "
                                 "while being read; skipped")
            return result
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.errors.append(f"{shown}: cannot read: {exc}")
        return result
    number = 0
    try:
        for number, doc in enumerate(yaml.load_all(text, Loader=_Loader), start=1):
            _read_document(shown, number, doc, result)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        result.errors.append(f"{shown}: document {number + 1}: invalid YAML{where}: {problem}")
    return result


def _read_document(path: str, number: int, doc: Any, result: FileResult) -> None:
    if doc is None:
        return  # an empty document (a trailing ---)
    where = f"{path}: document {number}"
    if not isinstance(doc, dict):
        result.errors.append(f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
        return
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        for index, item in enumerate(doc["items"]):
            _read_object(f"{where}, items[{index}]", item, result)
    else:
        _read_object(where, doc, result)


def _read_object(where: str, doc: Any, result: FileResult) -> None:
    if not isinstance(doc, dict):
        result.errors.append(f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
        return
    try:
        obj = read_object(doc)
    except ObjectError as exc:
        result.errors.append(f"{where} {exc}")
        return
    if obj is None:
        kind = str(doc.get("kind"))
        result.skipped[kind] = result.skipped.get(kind, 0) + 1
        log.debug("%s: skipping %s (not used for DNS)", where, kind)
        return
    if obj.key in result.objects:
        result.errors.append(f"{where} ({obj.key[0]} {_ref(obj.key)}): defined twice in this file")
        return
    result.objects[obj.key] = obj


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} bytes"


def _ref(key: Key) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]




Signature = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns: "the same bytes as before"


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _signatures(paths: Iterable[Path]) -> dict[Path, Signature | None]:
    return {p: _signature(p) for p in paths}


@dataclass
class _Scan:
    """What is on disk now: every manifest file with its signature, and the named paths that are gone."""

    files: dict[Path, Signature]
    missing: list[Path]

    def keeps(self, path: Path) -> bool:
        """``path`` is under a named path that is missing: its last good state stays."""
        return any(path == root or path.is_relative_to(root) for root in self.missing)


@dataclass
class _Update:
    """A reload worked out on the worker thread, for the event loop to commit in one go."""

    files: dict[Path, dict[Key, KubeObject]]
    errors: dict[Path, list[str]]
    seen: dict[Path, Signature | None]
    merged: dict[Key, KubeObject]
    events: list[Event]
    touched: list[str]


class ManifestSource:
    """Objects from manifest files; :meth:`watch` applies edits as they happen."""

    def __init__(
        self,
        paths: Iterable[str | Path],
        sink: Sink,
        on_error=None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        settle: float = DEFAULT_SETTLE,
        on_missing=None,
    ):
        # Absolute, not resolved: a symlink swapped to a new target must be followed there.
        self.paths = [Path(p).absolute() for p in paths]
        self.sink = sink
        self.on_error = on_error or (lambda message: None)
        self.on_missing = on_missing or (lambda count: None)
        self.max_bytes = max_bytes
        self.settle = settle
        self._files: dict[Path, dict[Key, KubeObject]] = {}  # last good state per file
        self._merged: dict[Key, KubeObject] = {}
        # Each file's signature when last read, good or bad; None: gone as it was read (read again next scan).
        self._seen: dict[Path, Signature | None] = {}
        self.errors: dict[Path, list[str]] = {}
        self.missing: dict[Path, float] = {}  # named path -> time.time() it was found gone
        self.settling: frozenset[Path] = frozenset()  # changed files waiting to stop changing
        self.reloads = 0
        self._lock = asyncio.Lock()  # one reload at a time
        self._changed = asyncio.Event()  # set after every commit or settling change (tests await it)

    @property
    def files(self) -> list[Path]:
        """The files read so far (good or not), in order."""
        return sorted(self._seen)

    # ------------------------------------------------------------------ loading

    def load(self, progress_every: float = 1.0) -> None:
        """Read everything and emit it, then "synced" for every kind.

        A long load logs a status line every ``progress_every`` seconds.
        """
        scan = self._scan()
        started = last = time.monotonic()
        results = {}
        for done, path in enumerate(scan.files, start=1):
            results[path] = read_file(path, self.max_bytes)
            now = time.monotonic()
            if now - last >= progress_every:
                last = now
                objects = sum(len(r.objects) for r in results.values())
                log.info("loading manifests: %d/%d files, %d objects, %.0fs", done, len(scan.files), objects,
                         now - started)
        update = self._prepare(scan, results, set())
        self._commit(scan, update, quiet=True)
        self.sink([*update.events, *(Synced(kind) for kind in KINDS)])

    def reload(self, changed: Iterable[Path] = ()) -> None:
        """Re-read, now and on this thread, the files that changed on disk (and ``changed``); deleted ones drop out."""
        scan = self._scan()
        dirty, gone = self._plan(scan, force=False)
        dirty |= {p for p in changed if p in scan.files}
        update = self._prepare(scan, {p: read_file(p, self.max_bytes) for p in sorted(dirty)}, gone)
        self._commit(scan, update)

    async def refresh(self, force: bool = False, stop: asyncio.Event | None = None) -> None:
        """Bring the served state in line with the disk, without blocking the event loop.

        Listing, reading and parsing run on a worker thread; a file that changed is
        applied only once it has stayed unchanged for :attr:`settle` seconds.
        ``force`` re-reads every file, changed or not (a reload signal).
        """
        async with self._lock:
            scan = await asyncio.to_thread(self._scan)
            dirty, gone = self._plan(scan, force)
            changed = {p: scan.files[p] for p in dirty if self._seen.get(p) != scan.files[p]}
            if self.settle <= 0:
                changed = {}
            await self._apply(scan, dirty - changed.keys(), gone)
            while changed:
                self._set_settling(changed)
                if await _stopped(stop, self.settle):
                    break
                now = await asyncio.to_thread(_signatures, list(changed))
                stable = {p: sig for p, sig in changed.items() if now[p] == sig}
                changed = {p: sig for p, sig in now.items() if sig is not None and sig != changed[p]}
                if stable:
                    scan.files.update(stable)  # what is read: the files as they settled
                    await self._apply(scan, set(stable), set())
            self._set_settling({})

    async def _apply(self, scan: _Scan, paths: set[Path], gone: set[Path]) -> None:
        results = await asyncio.to_thread(lambda: {p: read_file(p, self.max_bytes) for p in sorted(paths)})
        update = await asyncio.to_thread(self._prepare, scan, results, gone)
        self._commit(scan, update)  # on the loop: assignments and one sink call

    # ------------------------------------------------------------------ watching

    async def watch(self, stop: asyncio.Event, debounce_ms: int = 150) -> None:
        """Follow the manifest paths until ``stop`` is set.

        Each named path is watched through its directory (editors save by writing a
        new file and renaming it over the old one, which would end a watch on the
        file itself).  The named paths are checked every :data:`ROOT_CHECK_INTERVAL`:
        one that vanished, came back or now leads elsewhere (a symlink swapped)
        restarts the watch on what is there now.
        """
        from watchfiles import awatch  # imported here: only serving needs it

        while not stop.is_set():
            identity = self._identity()
            targets = self._targets()
            restart = asyncio.Event()
            follower = asyncio.create_task(self._follow(awatch, targets, restart, stop, debounce_ms)) if targets else None
            try:
                await asyncio.sleep(0)  # the follower's first step sets up the OS watch
                await self.refresh(stop=stop)  # then catch up with what changed while nothing was watching
                missing = set(self.missing)
                # Start again when a named path now leads elsewhere, or went or came back (seen by the
                # follower's events: a directory recreated at once can reuse its inode number).
                while not await _stopped(stop, ROOT_CHECK_INTERVAL):
                    if (self._identity() != identity or set(self.missing) != missing
                            or (follower is not None and follower.done())):
                        break
            finally:
                restart.set()
                if follower is not None:
                    await follower

    async def _follow(self, awatch, targets: list[Path], restart: asyncio.Event, stop: asyncio.Event,
                      debounce_ms: int) -> None:
        watched = {str(t) for t in targets}
        try:
            async for changes in awatch(*targets, stop_event=restart, debounce=debounce_ms, step=50):
                await self.refresh(stop=stop)
                if any(path in watched for _, path in changes):
                    return  # a watched directory itself went (or was replaced): its OS watch is dead
        except Exception as exc:  # noqa: BLE001 (a watched directory removed under the watcher: rewatch)
            log.debug("watch of %s ended: %s", ", ".join(map(display, targets)), exc)

    def _targets(self) -> list[Path]:
        """What to watch: each named directory, and the directory of each named file.

        A named directory that is gone is not watched through its parent (that could be
        /tmp, or /, recursively): the checks every ROOT_CHECK_INTERVAL see it come back.
        """
        return sorted({p if p.is_dir() else p.parent for p in self.paths if p.is_dir() or p.is_file()})

    def _identity(self) -> tuple:
        """What each named path leads to now; a change means the watch must start again."""
        out: list[tuple[bool, int, int] | None] = []
        for path in self.paths:
            try:
                st = path.stat() if path.is_dir() else path.parent.stat()
                out.append((path.exists(), st.st_dev, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    async def wait_until(self, predicate, timeout: float = 10.0) -> None:
        """Await ``predicate()`` becoming true, re-checked after each commit or settling change."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _set_settling(self, paths) -> None:
        self.settling = frozenset(paths)
        if paths:
            log.debug("waiting for %s to stop changing", ", ".join(map(display, sorted(paths))))
        self._changed.set()

    # ------------------------------------------------------------------ the steps of a reload

    def _scan(self) -> _Scan:
        files: dict[Path, Signature] = {}
        missing = []
        for root in self.paths:
            if not root.exists():
                missing.append(root)
                continue
            for path in manifest_files([root]):
                sig = _signature(path)
                if sig is not None:
                    files[path] = sig
        return _Scan(files, missing)

    def _plan(self, scan: _Scan, force: bool) -> tuple[set[Path], set[Path]]:
        """Files to read (new or changed, or all when forced) and files gone from disk."""
        dirty = {p for p, sig in scan.files.items() if force or self._seen.get(p) != sig}
        known = set(self._files) | set(self.errors)
        gone = {p for p in known if p not in scan.files and not scan.keeps(p)}
        return dirty, gone

    def _prepare(self, scan: _Scan, results: dict[Path, FileResult], gone: set[Path]) -> _Update:
        """The new state after ``results`` and ``gone``; pure apart from logging (runs on the worker thread)."""
        files, errors, seen = dict(self._files), dict(self.errors), dict(self._seen)
        touched = []
        for path, result in results.items():
            seen[path] = scan.files.get(path) or _signature(path)
            if result.errors:
                errors[path] = result.errors
                kept = "keeping its last good state" if path in files else "nothing loaded from it"
                for message in result.errors:
                    log.error("%s (%s)", message, kept)
                    self.on_error(message)
            else:
                errors.pop(path, None)
                files[path] = result.objects
            touched.append(display(path))
        for path in sorted(gone):
            files.pop(path, None)
            errors.pop(path, None)
            seen.pop(path, None)
            touched.append(display(path))
        merged, events = _merge(files, self._merged)
        return _Update(files, errors, seen, merged, events, touched)

    def _commit(self, scan: _Scan, update: _Update, quiet: bool = False) -> None:
        self._note_missing(scan.missing)
        if update.touched:
            self._files, self.errors, self._seen = update.files, update.errors, update.seen
            self._merged = update.merged
            if not quiet:
                self.reloads += 1
                shown = update.touched if len(update.touched) <= 4 else [
                    *update.touched[:3], f"{len(update.touched) - 3} more files"]
                log.info("reloaded %s: %d object change(s)", ", ".join(shown), len(update.events))
                if update.events:
                    self.sink(update.events)
        self._changed.set()

    def _note_missing(self, missing: list[Path]) -> None:
        now = set(missing)
        for path in sorted(now - self.missing.keys()):
            self.missing[path] = time.time()
            kept = sum(len(objs) for p, objs in self._files.items() if p == path or p.is_relative_to(path))
            message = (f"{display(path)} is gone (removed, or a symlink to nothing): still serving its last good "
                       f"state ({kept} objects) and reporting not ready until it is back")
            log.error("%s", message)
        for path in sorted(self.missing.keys() - now):
            del self.missing[path]
            log.info("%s is back: reloading from it", display(path))
        self.on_missing(len(self.missing))


def _merge(files: dict[Path, dict[Key, KubeObject]], previous: dict[Key, KubeObject]) -> tuple[dict, list[Event]]:
    """Every file's objects in one map (a later file wins a clash), and the events that turn ``previous`` into it."""
    merged: dict[Key, KubeObject] = {}
    owners: dict[Key, Path] = {}
    if len(files) == 1:  # one file (the common case): its map is the merged one (neither is changed in place)
        (merged,) = files.values()
    for path in sorted(files) if len(files) > 1 else ():
        for key, obj in files[path].items():
            if key in merged and merged[key] != obj:
                log.warning(
                    "%s %s is defined in %s and %s; using the latter",
                    key[0], _ref(key), display(owners[key]), display(path),
                )
            merged[key] = obj
            owners[key] = path
    events: list[Event] = [Delete(key) for key in previous.keys() - merged.keys()]
    events += [Upsert(obj) for key, obj in merged.items() if previous.get(key) != obj]
    return merged, events


async def _stopped(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set; True if it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
