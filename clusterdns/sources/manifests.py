"""Kubernetes manifests on disk as a source of objects, with hot reload.

Reads files or directories of YAML/JSON (multi-document, ``kind: List`` and
``*List`` kinds as ``kubectl get -o yaml`` prints them).  A file is applied
whole or not at all: a file with any error keeps the last good state it had
(nothing, at start-up), and the error names the file, the document, the
object and the field.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..events import Delete, Event, Sink, Synced, Upsert
from ..objects import KINDS, Key, KubeObject, ObjectError, read_object

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


def read_file(path: Path) -> FileResult:
    result = FileResult()
    shown = display(path)
    try:
        text = path.read_text(encoding="utf-8")
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


def _ref(key: Key) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


class ManifestSource:
    """Objects from manifest files; :meth:`watch` applies edits as they happen."""

    def __init__(self, paths: Iterable[str | Path], sink: Sink, on_error=None):
        self.paths = [Path(p).resolve() for p in paths]
        self.sink = sink
        self.on_error = on_error or (lambda message: None)
        self._files: dict[Path, dict[Key, KubeObject]] = {}  # last good state per file
        self._merged: dict[Key, KubeObject] = {}
        self.errors: dict[Path, list[str]] = {}
        self.reloads = 0

    def load(self, progress_every: float = 1.0) -> None:
        """Read everything and emit it, then "synced" for every kind.

        A long load logs a status line every ``progress_every`` seconds.
        """
        files = manifest_files(self.paths)
        started = last = time.monotonic()
        for done, path in enumerate(files, start=1):
            self._read(path)
            now = time.monotonic()
            if now - last >= progress_every:
                last = now
                objects = sum(len(objs) for objs in self._files.values())
                log.info("loading manifests: %d/%d files, %d objects, %.0fs", done, len(files), objects, now - started)
        events: list[Event] = self._merge()
        events += [Synced(kind) for kind in KINDS]
        self.sink(events)

    def reload(self, changed: Iterable[Path]) -> None:
        """Re-read ``changed`` files (deleted ones drop out) and emit the difference."""
        current = set(manifest_files(self.paths))
        known = set(self._files) | set(self.errors)
        # A directory moved in or out arrives as one path: compare with what we hold too.
        changed = set(changed) | (current - known) | (known - current)
        touched = []
        for path in sorted(changed):
            if path in current:
                self._read(path)
            elif path in self._files or path in self.errors:
                self._files.pop(path, None)
                self.errors.pop(path, None)
            else:
                continue
            touched.append(display(path))
        if not touched:
            return
        self.reloads += 1
        events = self._merge()
        log.info("reloaded %s: %d object change(s)", ", ".join(touched), len(events))
        if events:
            self.sink(events)

    async def watch(self, stop: asyncio.Event, debounce_ms: int = 150) -> None:
        """Follow the manifest paths until ``stop`` is set."""
        from watchfiles import awatch  # imported here: only serving needs it

        # A file is watched through its directory: editors save by writing a new file and
        # renaming it over the old one, which would end a watch on the file itself.
        targets = sorted({p if p.is_dir() else p.parent for p in self.paths if p.exists()})
        if not targets:
            return
        async for changes in awatch(*targets, stop_event=stop, debounce=debounce_ms, step=50):
            self.reload({Path(p) for _, p in changes})

    def _read(self, path: Path) -> None:
        result = read_file(path)
        if result.errors:
            self.errors[path] = result.errors
            kept = "keeping its last good state" if path in self._files else "nothing loaded from it"
            for message in result.errors:
                log.error("%s (%s)", message, kept)
                self.on_error(message)
            return
        self.errors.pop(path, None)
        self._files[path] = result.objects

    def _merge(self) -> list[Event]:
        merged: dict[Key, KubeObject] = {}
        owners: dict[Key, Path] = {}
        for path in sorted(self._files):
            for key, obj in self._files[path].items():
                if key in merged and merged[key] != obj:
                    log.warning(
                        "%s %s is defined in %s and %s; using the latter",
                        key[0], _ref(key), display(owners[key]), display(path),
                    )
                merged[key] = obj
                owners[key] = path
        events: list[Event] = [Delete(key) for key in self._merged.keys() - merged.keys()]
        events += [Upsert(obj) for key, obj in merged.items() if self._merged.get(key) != obj]
        self._merged = merged
        return events
