"""Extract only the named members of an archive: Debian .deb (``ar``), tar (plain, gzip, bzip2, xz), zip (a Python
wheel) and archives nested in them, read with the standard library alone.

Nothing is extracted by the archive's own paths: each named member's bytes are copied to the target path the
caller gives, so an archive cannot write outside it, and every other member is passed over unread. zstd-compressed
tarballs (newer .debs) are refused with a clear line: Python 3.11's standard library has no zstd decoder.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from ..core.errors import InputError
from .digest import copy_hashed
from .reserved import refuse_reserved

Chain = tuple[str, ...]
AR_MAGIC = b"!<arch>\n"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZIP_MAGIC = b"PK\x03\x04"
AR_HEADER = 60


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of an open file from ``offset`` (one member of an ``ar`` archive)."""

    def __init__(self, stream: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._stream, self._offset, self._left = stream, offset, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        wanted = min(len(buffer), self._left)
        if wanted <= 0:
            return 0
        self._stream.seek(self._offset)
        data = self._stream.read(wanted)
        buffer[: len(data)] = data
        self._offset += len(data)
        self._left -= len(data)
        return len(data)


def _ar_members(stream: BinaryIO, label: str) -> Iterator[tuple[str, BinaryIO]]:
    """Each member of an ``ar`` archive (the .deb container) as its name and a view of its bytes."""
    stream.seek(len(AR_MAGIC))
    while header := stream.read(AR_HEADER):
        if len(header) < AR_HEADER or header[58:60] != b"`\n":
            raise InputError(f"{label}: damaged ar archive (bad member header)")
        name = header[:16].decode("ascii", "replace").strip()
        name = name[:-1] if name.endswith("/") and name != "/" else name  # GNU ar ends names with '/'
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise InputError(f"{label}: damaged ar archive (bad size of member {name!r})") from None
        start = stream.tell()
        yield name, io.BufferedReader(_Window(stream, start, size))
        stream.seek(start + size + (size % 2))  # members are padded to an even length


def _normalised(name: str) -> str:
    """A tar member name without leading './' (Debian data tarballs store './usr/...')."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _tar_members(stream: BinaryIO, label: str) -> Iterator[tuple[str, BinaryIO | None]]:
    """Each member of a (compressed) tar stream in archive order, with a reader for regular files (None for links
    and folders); nothing is decompressed beyond the last member the caller asks for."""
    if stream.peek(4)[:4] == ZSTD_MAGIC:  # type: ignore[attr-defined]
        raise InputError(
            f"{label}: is zstd-compressed, which Python 3.11's standard library cannot read (pin a package version "
            "compressed with xz or gzip)"
        )
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                yield _normalised(member.name), archive.extractfile(member) if member.isreg() else None
    except (tarfile.TarError, EOFError, OSError) as error:  # lzma and zlib failures surface as these
        raise InputError(f"{label}: cannot be read as a tar archive ({error})") from None


def _zip_members(stream: BinaryIO, label: str) -> Iterator[tuple[str, BinaryIO | None]]:
    """Each member of a zip archive (a wheel) in the order of its directory, with a reader for regular files (None
    for folders and symbolic links)."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{label}: cannot be read as a zip archive ({error})") from None
    with archive:
        for info in archive.infolist():
            link = stat.S_ISLNK(info.external_attr >> 16)
            yield info.filename, None if info.is_dir() or link else archive.open(info)


def _members(stream: BinaryIO, label: str) -> Iterator[tuple[str, BinaryIO | None]]:
    """The members of an ar, zip or tar archive, told apart by the first bytes."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    head = buffered.peek(len(AR_MAGIC))[: len(AR_MAGIC)]
    if not head.startswith((AR_MAGIC, ZIP_MAGIC)):
        yield from _tar_members(buffered, label)
        return
    is_ar = head.startswith(AR_MAGIC)
    if not buffered.seekable():
        raise InputError(f"{label}: {'an ar' if is_ar else 'a zip'} archive nested in a tar stream is not supported")
    yield from (_ar_members if is_ar else _zip_members)(buffered, label)


def _extract_from(
    stream: BinaryIO, label: str, wanted: Mapping[Chain, Path], found: dict[Chain, tuple[str, int]]
) -> None:
    """Copy the wanted members of one archive level, streaming into nested archives for longer chains."""
    heads: dict[str, list[Chain]] = {}
    for chain in wanted:
        heads.setdefault(chain[0], []).append(chain)
    with contextlib.closing(_members(stream, label)) as members:
        for name, reader in members:
            if name not in heads:
                continue
            if reader is None:
                raise InputError(f"{label}: member {name} is a link or a folder, not a file")
            chains = heads.pop(name)
            leaves = [chain for chain in chains if len(chain) == 1]
            nested = {chain[1:]: wanted[chain] for chain in chains if len(chain) > 1}
            if leaves:
                with open(wanted[leaves[0]], "wb") as target:
                    found[leaves[0]] = copy_hashed(reader, target)
                for chain in leaves[1:]:
                    shutil.copyfile(wanted[leaves[0]], wanted[chain])
                    found[chain] = found[leaves[0]]
            if nested:
                inner_found: dict[Chain, tuple[str, int]] = {}
                with contextlib.ExitStack() as stack:
                    inner = stack.enter_context(open(wanted[leaves[0]], "rb")) if leaves else reader
                    _extract_from(inner, f"{label}!{name}", nested, inner_found)
                found.update({(name,) + chain: value for chain, value in inner_found.items()})
            if not heads:
                break  # the rest of the archive is never decompressed


def extract_members(archive: Path, wanted: Mapping[Chain, Path]) -> dict[Chain, tuple[str, int]]:
    """Extract exactly the ``wanted`` members (path chain -> target file) of ``archive``.

    Returns each chain's SHA-256 and size. A member missing from the archive, a reserved member, a link where a
    file was expected and an unreadable archive are each one :class:`InputError`.
    """
    refuse_reserved("!".join(chain) for chain in wanted)
    found: dict[Chain, tuple[str, int]] = {}
    with open(archive, "rb") as stream:
        _extract_from(stream, archive.name, wanted, found)
    missing = [chain for chain in wanted if chain not in found]
    if missing:
        for target in wanted.values():
            Path(target).unlink(missing_ok=True)
        raise InputError(
            f"{archive.name}: has no regular file {'!'.join(missing[0])} (the pinned archive's layout differs from "
            "the catalogue)"
        )
    return found
