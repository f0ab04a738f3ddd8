"""The guests directory as the agent sees it: config file -> parsed state.

A file is read (safely: agent.safefile) and parsed only when it changed (its
lstat differs from the last read), so an event costs the same with 1 or 1,000
files. A refused or bad file is logged once per version of the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from agent.safefile import read_config
from translators.errors import HpvmError
from translators.options import ConfigFile, parse_config_text

log = logging.getLogger("avio-agent")


@dataclass
class Entry:
    """One config file: its parse (or why it has none) for one version of the file."""

    key: tuple[int, ...]
    config: ConfigFile | None = None
    error: str | None = None
    empty: bool = False  # no option at all: treated like a deleted file


def _key(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)


def is_config(path: Path) -> bool:
    return path.suffix == ".conf" and not path.name.startswith(".")


class ConfigIndex:
    """Parsed config files of one directory, re-read only when a file changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._entries: dict[Path, Entry] = {}
        self.waiting: dict[Path, list[str]] = {}  # backing locations a file waits for

    def paths(self) -> list[Path]:
        """The config files there are now (a directory scan)."""
        try:
            return sorted(p for p in self.directory.iterdir() if is_config(p))
        except OSError as err:
            log.error("guests directory %s: %s", self.directory, err.strerror)
            return []

    def get(self, path: Path) -> Entry | None:
        """The file's entry, re-read when it changed; None when it does not exist."""
        try:
            info = os.lstat(path)
        except OSError:
            self.forget(path)
            return None
        key = _key(info)
        entry = self._entries.get(path)
        if entry is not None and entry.key == key:
            return entry
        entry = self._load(path, key)
        self._entries[path] = entry
        if entry.error:
            log.error("config %s refused: %s", path, entry.error)
        return entry

    def forget(self, path: Path) -> None:
        self._entries.pop(path, None)
        self.waiting.pop(path, None)

    def waiting_for(self, resolve) -> list[Path]:
        """Files waiting for a backing location for which `resolve(location)` is true."""
        return [p for p, where in self.waiting.items() if any(resolve(w) for w in where)]

    @staticmethod
    def _load(path: Path, key: tuple[int, ...]) -> Entry:
        try:
            text = read_config(path)
            config = parse_config_text(text, path.stem, str(path))
        except HpvmError as err:
            message = str(err)
            prefix = f"{path}: "
            return Entry(key, error=message.removeprefix(prefix))
        empty = not config.given and not config.guest.devices
        return Entry(key, config=config, empty=empty)
