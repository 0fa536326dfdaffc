"""Safe reading and extraction of zip and tar archives (MLflow model directories, skops files).

Artifacts arrive from users, so an archive is checked as a whole before any member is read:
every name must stay inside the archive (no absolute paths, drive letters or ``..``), only
regular files and directories are allowed (no symlinks, hardlinks, devices or FIFOs), there are
at most ``max_members`` entries, and the declared uncompressed sizes add up to at most
``max_unpacked_bytes``. Zip members cannot yield more than their declared size (``zipfile``
stops there), and tar sizes are those of the stream itself, so the limit holds for what is
actually written: a zip bomb fails the check instead of filling the disk.

:func:`open_archive` returns an :class:`Archive` listing the members; its :meth:`Archive.spool`
copies one member to a temporary file for a scanner that needs a path, and
:meth:`Archive.extract_all` unpacks everything under a fresh directory, counting bytes as it
writes. Nothing here interprets member contents.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Self

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "Archive",
    "ArchiveMember",
    "UnsafeArchive",
    "is_archive",
    "normalise_member_name",
    "open_archive",
]

DEFAULT_MAX_MEMBERS = 10_000
DEFAULT_MAX_UNPACKED_BYTES = 4 * 1024**3

_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class UnsafeArchive(ValueError):
    """The archive cannot be read safely; ``str(error)`` says why in one sentence."""


@dataclass(frozen=True)
class ArchiveMember:
    name: str  # normalised: forward slashes, no leading "./", no trailing "/"
    size: int
    is_dir: bool


def normalise_member_name(raw: str) -> str:
    """The member's relative POSIX path, or :class:`UnsafeArchive` if it could escape."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise UnsafeArchive(f"archive member {raw!r} has a NUL byte in its name")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchive(f"archive member {raw!r} has an absolute path")
    parts = [part for part in PurePosixPath(name).parts if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"archive member {raw!r} escapes the archive (path traversal)")
    if not parts:
        raise UnsafeArchive(f"archive member {raw!r} has an empty name")
    return "/".join(parts)


def _is_root(raw: str) -> bool:
    """True for "." and "./", the entry for the archive's own top directory."""
    return all(part in ("", ".") for part in raw.replace("\\", "/").split("/")) and not (
        raw.startswith(("/", "\\"))
    )


def is_archive(path: Path) -> bool:
    """True for a zip file or a (possibly compressed) tar file."""
    if zipfile.is_zipfile(path):
        return True
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError):
        return False


def _size_text(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


class Archive:
    """An open, checked zip or tar archive; use :func:`open_archive` to make one."""

    def __init__(
        self,
        path: Path,
        *,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    ) -> None:
        self.path = path
        self.max_unpacked_bytes = max_unpacked_bytes
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._zip_infos: dict[str, zipfile.ZipInfo] = {}
        self._tar_infos: dict[str, tarfile.TarInfo] = {}
        members: dict[str, ArchiveMember] = {}
        total = 0
        try:
            if zipfile.is_zipfile(path):
                self.kind = "zip"
                self._zip = zipfile.ZipFile(path)
                entries: Iterator[tuple[str, int, bool]] = self._check_zip(self._zip)
            else:
                self.kind = "tar"
                try:
                    self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed in close()
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise UnsafeArchive(f"not a zip or tar archive ({exc})") from exc
                entries = self._check_tar(self._tar)
            for name, size, is_dir in entries:
                if len(members) >= max_members:
                    raise UnsafeArchive(f"the archive has more than {max_members} members")
                if name in members:
                    raise UnsafeArchive(f"archive member {name!r} appears twice")
                total += size
                if total > max_unpacked_bytes:
                    raise UnsafeArchive(
                        "the archive would unpack to more than "
                        f"{_size_text(max_unpacked_bytes)} (possible zip bomb)"
                    )
                members[name] = ArchiveMember(name, size, is_dir)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            self.close()
            raise UnsafeArchive(f"the archive is corrupt ({exc})") from exc
        except BaseException:
            self.close()
            raise
        self.members: tuple[ArchiveMember, ...] = tuple(members.values())
        self.total_bytes = total

    def _check_zip(self, zf: zipfile.ZipFile) -> Iterator[tuple[str, int, bool]]:
        for info in zf.infolist():
            if info.is_dir() and _is_root(info.filename):
                continue
            name = normalise_member_name(info.filename)
            # Made on Unix, the high bits are st_mode; many writers leave the file type out.
            kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
            if stat.S_ISLNK(kind):
                raise UnsafeArchive(f"archive member {name!r} is a symlink")
            if kind and not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
                raise UnsafeArchive(f"archive member {name!r} is not a regular file")
            if info.flag_bits & 0x1:
                raise UnsafeArchive(f"archive member {name!r} is encrypted")
            if info.compress_type not in _ZIP_METHODS:
                raise UnsafeArchive(
                    f"archive member {name!r} uses an unsupported compression method"
                )
            if info.file_size < 0:
                raise UnsafeArchive(f"archive member {name!r} has an invalid size")
            is_dir = info.is_dir()
            if not is_dir:
                self._zip_infos[name] = info
            yield name, 0 if is_dir else info.file_size, is_dir

    def _check_tar(self, tf: tarfile.TarFile) -> Iterator[tuple[str, int, bool]]:
        # next() rather than getmembers(): stop at the first bad entry instead of reading all.
        while (info := tf.next()) is not None:
            if info.isdir() and _is_root(info.name):
                continue  # "./" from `tar -C dir .`
            name = normalise_member_name(info.name)
            if info.issym() or info.islnk():
                raise UnsafeArchive(f"archive member {name!r} is a link")
            if not (info.isreg() or info.isdir()):
                raise UnsafeArchive(f"archive member {name!r} is not a regular file")
            if info.isreg():
                self._tar_infos[name] = info
            yield name, info.size if info.isreg() else 0, info.isdir()

    # -- reading ------------------------------------------------------------------------------

    @property
    def files(self) -> tuple[str, ...]:
        """Names of the regular files, in archive order."""
        return tuple(m.name for m in self.members if not m.is_dir)

    def open(self, name: str) -> IO[bytes]:
        """A binary stream over one regular file member (seekable)."""
        if self._zip is not None and name in self._zip_infos:
            return self._zip.open(self._zip_infos[name])
        if self._tar is not None and name in self._tar_infos:
            stream = self._tar.extractfile(self._tar_infos[name])
            if stream is not None:
                return stream
        raise KeyError(name)

    def read(self, name: str, limit: int) -> bytes:
        """A member's bytes, or :class:`UnsafeArchive` when it is larger than ``limit``."""
        with _corrupt_as_unsafe(name), self.open(name) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise UnsafeArchive(f"archive member {name!r} is larger than {_size_text(limit)}")
        return data

    def head(self, name: str, n: int = 16) -> bytes:
        with _corrupt_as_unsafe(name), self.open(name) as stream:
            return stream.read(n)

    @contextmanager
    def spool(self, name: str, directory: Path) -> Iterator[Path]:
        """Copy one member to a file in ``directory`` (removed afterwards) and yield its path."""
        fd, raw = tempfile.mkstemp(dir=directory, suffix=PurePosixPath(name).suffix)
        target = Path(raw)
        try:
            with _corrupt_as_unsafe(name), self.open(name) as source, os.fdopen(fd, "wb") as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
            yield target
        finally:
            target.unlink(missing_ok=True)

    def extract_all(self, dest: Path) -> None:
        """Unpack every member under ``dest`` (which must exist), never outside it."""
        root = dest.resolve()
        written = 0
        for member in self.members:
            target = root.joinpath(*member.name.split("/"))
            if root not in target.parents:
                raise UnsafeArchive(f"archive member {member.name!r} escapes the archive")
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with (
                _corrupt_as_unsafe(member.name),
                self.open(member.name) as source,
                os.fdopen(os.open(target, flags, 0o600), "wb") as sink,
            ):
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > self.max_unpacked_bytes:
                        raise UnsafeArchive(
                            "the archive would unpack to more than "
                            f"{_size_text(self.max_unpacked_bytes)} (possible zip bomb)"
                        )
                    sink.write(chunk)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def _corrupt_as_unsafe(name: str) -> Iterator[None]:
    """Decompression and CRC errors while reading a member become :class:`UnsafeArchive`."""
    try:
        yield
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise UnsafeArchive(f"archive member {name!r} is corrupt ({exc})") from exc


def open_archive(
    path: Path,
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> Archive:
    """Open and check ``path``; :class:`UnsafeArchive` says what is wrong with it."""
    return Archive(path, max_members=max_members, max_unpacked_bytes=max_unpacked_bytes)
