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
from stat import S_ISDIR, S_ISLNK
from typing import TypeVar

from handler.host.host_root import HostRoot

_T = TypeVar("_T")

_MAX_LINKS = 40
"""As the kernel's limit on links followed in one lookup."""


class Escape(Exception):
    """A link under the host root leads outside it (or loops)."""

    def __init__(self, link: str, target: str) -> None:
        super().__init__(f"{link} -> {target}")
        self.description = f"/{link} -> {target}"


class HostTree:
    def __init__(self, host_root: Path | HostRoot) -> None:
        """One pass over the host: a ``Path`` is resolved now, a ``HostRoot`` was resolved once,
        and its directories are shared with earlier trees; links and files are still read fresh."""
        shared = host_root if isinstance(host_root, HostRoot) else HostRoot(host_root)
        self.root = shared.root
        self._prefix = shared.prefix
        self._dirs = shared.dirs
        """Real paths of directories already resolved (and checked), so siblings share the work."""
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

    def lookup(self, path: str, link_expected: bool = False) -> tuple[str, os.stat_result | None]:
        """``resolve`` and ``os.stat`` of the result in one walk: the real path and what is there
        (None: nothing); ``Escape`` as for ``resolve``.

        Each step's ``lstat`` says both whether a link was reached and what is there, so no
        ``stat`` follows; ``link_expected`` (a bus entry) asks ``readlink`` first instead. A
        directory found is kept as real, as ``_real_dir`` would keep it; a link found is forgotten
        as a directory, should it have been one when kept.
        """
        folder, name = _split(path)
        real = _join(self._real_dir(folder), name)
        for step in range(_MAX_LINKS):
            if step or not link_expected:
                status = _lstat(real)
                if status is None or not S_ISLNK(status.st_mode):
                    if status is not None and S_ISDIR(status.st_mode):
                        self._dirs.setdefault(real, real)
                    return real, status
                self._dirs.pop(real, None)
            target = _readlink(real)
            if target is None:  # not a link (or no longer one): what is there now
                return real, _stat(real)
            real, done = self._through(_split(real)[0], real, target, path)
            if done:
                return real, _stat(real)
        raise Escape(self.relative(path), "a link loop")

    def link_name(self, path: str) -> str | None:
        """The last component of a link's target, checked to stay inside the root but not followed.

        Enough for ``driver``, ``physfn`` and ``iommu_group`` links, whose name is all we need.
        """
        target = self.link_target(path)
        return os.path.basename(target) if target is not None else None

    def link_name_in(self, folder: str, name: str) -> str | None:
        """``link_name`` of ``name`` in ``folder``, a real directory (from ``lookup``, ``resolve``)."""
        target = self.link_target_in(folder, name)
        return target.rpartition("/")[2] if target is not None else None

    def link_target(self, path: str) -> str | None:
        """Where a link points, as a path checked to stay inside the root; not followed further."""
        folder, name = _split(path)
        return self.link_target_in(self._real_dir(folder), name, path)

    def link_target_in(self, folder: str, name: str, original: str | None = None) -> str | None:
        """``link_target`` of ``name`` in ``folder``, a real directory (from ``lookup``, ``resolve``)."""
        target = _readlink(_join(folder, name))
        if target is None:
            return None
        joined = os.path.normpath(target if target[:1] == "/" else _join(folder, target))
        if not self.inside(joined):
            raise Escape(self.relative(original or _join(folder, name)), target)
        return joined

    def read(self, path: str) -> str | None:
        """A small file's stripped text; None when it is missing or unreadable."""
        folder, name = _split(path)
        return self.read_in(self._real_dir(folder), name, path)

    def read_in(self, folder: str, name: str, original: str | None = None) -> str | None:
        """``read`` of ``name`` in ``folder``, a real directory (from ``lookup``, ``resolve``)."""
        real = _join(folder, name)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            if error.errno != errno.ELOOP:
                return None
            try:  # the file is itself a link: follow it only inside the root
                fd = os.open(self._follow(real, original or real), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                return None
        try:
            return os.read(fd, 4096).decode("ascii", "replace").strip()
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_hex_in(self, folder: str, name: str) -> int | None:
        return _hex(self.read_in(folder, name))

    def read_hex(self, path: str) -> int | None:
        return _hex(self.read(path))

    def read_int(self, path: str) -> int | None:
        text = self.read(path)
        return int(text) if text and text.isdigit() else None

    def lexists(self, path: str) -> bool:
        """Whether anything, even a dangling link, is at ``path`` (``os.path.lexists``). A directory
        there, in a folder known to be real, is kept as real: it was just seen not to be a link; a
        link there is forgotten as a directory, so the next use of it follows it afresh."""
        status = _lstat(path)
        if status is None:
            return False
        if S_ISDIR(status.st_mode):
            folder = _split(path)[0]
            if self._dirs.get(folder) == folder:
                self._dirs.setdefault(path, path)
        elif S_ISLNK(status.st_mode):
            self._dirs.pop(path, None)
        return True

    def listdir(self, path: str) -> list[str]:
        real, status = self.lookup(path)
        if status is None:
            return []
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
            real, done = self._through(folder, real, target, original)
            if done:
                return real
        raise Escape(self.relative(original), "a link loop")

    def _through(self, folder: str, link: str, target: str, original: str) -> tuple[str, bool]:
        """Where ``link`` (in the real ``folder``) leads: the next path to look at, its directory made
        real, and whether it is real already (nothing left to follow); ``Escape`` if it leaves."""
        parts = target.split("/")
        if ".." in parts[_leading_dotdots(parts) :]:
            # "a/../b" where "a" may be a link: let the kernel's rules decide.
            resolved = os.path.realpath(link)
            if not self.inside(resolved):
                raise Escape(self.relative(original), target)
            return resolved, True
        joined = os.path.normpath(os.path.join(folder, target))
        if joined == self.root:
            return joined, True
        if not self.inside(joined):
            raise Escape(self.relative(original), target)
        folder, name = _split(joined)
        return _join(self._real_dir(folder), name), False


def noting_escapes(escapes: list[str], read: Callable[..., _T], *args: str) -> _T | None:
    """``read(*args)``, or None with the escape noted in ``escapes``."""
    try:
        return read(*args)
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


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
