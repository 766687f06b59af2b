"""The host's filesystem under ``--host-root``, read without following a link out of it.

In a container the host's /sys and /dev are mounted under the host root; a link that
leads elsewhere would make the agent read its own container (or anything) instead of the
host, so such a link raises ``Escape`` and is reported, never followed.

Links are followed by hand, one ``readlink`` at a time, from directories whose real path
is cached: sysfs is mostly links, and ``os.path.realpath`` would ``lstat`` every component
of every path again (ten times slower on a 1,024-VF host).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

_MAX_LINKS = 40
"""As the kernel's limit on links followed in one lookup."""


class Escape(Exception):
    """A link under the host root leads outside it (or loops)."""

    def __init__(self, link: str, target: str) -> None:
        super().__init__(f"{link} -> {target}")
        self.description = f"/{link} -> {target}"


class HostTree:
    def __init__(self, host_root: Path, dirs: dict[str, str] | None = None) -> None:
        """``dirs``: real paths of directories resolved by earlier trees over the same root, to
        share (see ``ResolvedDirs``); links and files are still read fresh."""
        self.root = os.path.realpath(host_root)
        self._prefix = self.root.rstrip("/") + "/"
        self._dirs: dict[str, str] = dirs if dirs is not None else {}
        """Real paths of directories already resolved (and checked), so siblings share the work."""
        self._dirs.setdefault(self.root, self.root)
        self._busy: set[str] = set()
        self._listed: dict[str, dict[str, bool]] = {}
        """Directories listed once, by real path: entry name -> is a link."""

    def path(self, relative: str) -> str:
        return f"{self._prefix}{relative}"

    def relative(self, path: str) -> str:
        return path[len(self._prefix) :] if path.startswith(self._prefix) else path

    def inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self._prefix)

    def resolve(self, path: str) -> str:
        """The real path of ``path`` under the root (which need not exist); ``Escape`` if outside."""
        folder, name = _split(path)
        return self._follow(_join(self._real_dir(folder), name), path)

    def link_name(self, path: str) -> str | None:
        """The last component of a link's target, checked to stay inside the root but not followed.

        Enough for ``driver``, ``physfn`` and ``iommu_group`` links, whose name is all we need.
        """
        target = self.link_target(path)
        return os.path.basename(target) if target is not None else None

    def link_target(self, path: str) -> str | None:
        """Where a link points, as a path checked to stay inside the root; not followed further."""
        folder, name = _split(path)
        real_folder = self._real_dir(folder)
        target = _readlink(_join(real_folder, name))
        if target is None:
            return None
        joined = os.path.normpath(os.path.join(real_folder, target))
        if not self.inside(joined):
            raise Escape(self.relative(path), target)
        return joined

    def read(self, path: str) -> str | None:
        """A small file's stripped text; None when it is missing or unreadable."""
        folder, name = _split(path)
        real = _join(self._real_dir(folder), name)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            if error.errno != errno.ELOOP:
                return None
            try:  # the file is itself a link: follow it only inside the root
                fd = os.open(self._follow(real, path), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                return None
        try:
            return os.read(fd, 4096).decode("ascii", "replace").strip()
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_hex(self, path: str) -> int | None:
        text = self.read(path)
        try:
            return int(text, 16) if text else None
        except ValueError:
            return None

    def read_int(self, path: str) -> int | None:
        text = self.read(path)
        return int(text) if text and text.isdigit() else None

    def listdir(self, path: str) -> list[str]:
        real = self.resolve(path)
        try:
            return os.listdir(real)
        except OSError:
            return []

    def has_entries(self, path: str) -> bool:
        """The directory exists and is not empty (without listing all of it)."""
        try:
            with os.scandir(self.resolve(path)) as found:
                return next(found, None) is not None
        except OSError:
            return False

    def entries(self, path: str) -> dict[str, bool]:
        """A directory's entries (name -> is a link), listed once; empty if missing.

        Lookups in a listed directory then need no ``readlink`` for entries that are not links.
        """
        real = self._real_dir(path)
        listed = self._listed.get(real)
        if listed is None:
            try:
                with os.scandir(real) as found:
                    listed = {entry.name: entry.is_symlink() for entry in found}
            except OSError:
                listed = {}
            self._listed[real] = listed
        return listed

    def _real_dir(self, path: str) -> str:
        real = self._dirs.get(path)
        if real is not None:
            return real
        if not self.inside(path) or path in self._busy:
            raise Escape(self.relative(path), "a link loop" if path in self._busy else path)
        self._busy.add(path)
        try:
            real = self._dirs[path] = self.resolve(path)
        finally:
            self._busy.discard(path)
        return real

    def _follow(self, real: str, original: str) -> str:
        """Follow ``real`` (whose directory is real) while it is a link; ``Escape`` if it leaves."""
        for _ in range(_MAX_LINKS):
            folder, name = _split(real)
            listed = self._listed.get(folder)
            if listed is not None and not listed.get(name, False):
                return real
            target = _readlink(real)
            if target is None:
                return real
            parts = target.split("/")
            if ".." in parts[_leading_dotdots(parts) :]:
                # "a/../b" where "a" may be a link: let the kernel's rules decide.
                resolved = os.path.realpath(real)
                if not self.inside(resolved):
                    raise Escape(self.relative(original), target)
                return resolved
            joined = os.path.normpath(os.path.join(folder, target))
            if joined == self.root:
                return joined
            if not self.inside(joined):
                raise Escape(self.relative(original), target)
            folder, name = _split(joined)
            real = _join(self._real_dir(folder), name)
        raise Escape(self.relative(original), "a link loop")


def noting_escapes(escapes: list[str], read: Callable[[], _T]) -> _T | None:
    """``read()``, or None with the escape noted in ``escapes``."""
    try:
        return read()
    except Escape as escape:
        escapes.append(escape.description)
        return None


def _split(path: str) -> tuple[str, str]:
    """Directory and name of an absolute path; the directory of ``/x`` is ``/``."""
    folder, name = path.rsplit("/", 1)
    return folder or "/", name


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder != "/" else f"/{name}"


def _leading_dotdots(parts: list[str]) -> int:
    count = 0
    while count < len(parts) and parts[count] in ("..", "."):
        count += 1
    return count


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
