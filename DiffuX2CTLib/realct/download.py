"""Download one pinned archive: streamed to a temporary sibling, size and SHA-256 checked, then renamed into place.

A file already in the cache is only verified; a network failure becomes one :class:`InputError` naming the host.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..core.atomic_write import write_file
from ..core.errors import InputError
from .catalog import Source
from .digest import CHUNK, mismatch, sha256_file

TIMEOUT_S = 60.0


def host_of(url: str) -> str:
    """The host a URL names, or 'the local file system' for file:// URLs."""
    return urllib.parse.urlsplit(url).hostname or "the local file system"


def _offline(url: str, reason: object) -> InputError:
    host = host_of(url)
    return InputError(f"cannot reach {host} ({reason}): real CTs need the network once; run again when online")


def _stream_to(source: Source, temporary: Path) -> None:
    """Write the URL's body to ``temporary``, checking size and SHA-256 (any failure is an InputError)."""
    try:
        response = urllib.request.urlopen(source.url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        raise InputError(
            f"{host_of(source.url)} answered {error.code} {error.reason} for {source.url}: the pinned file is gone "
            "from the registry; the catalogue needs a new pin"
        ) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
        raise _offline(source.url, getattr(error, "reason", error)) from None
    digest, size = hashlib.sha256(), 0
    try:
        with response, open(temporary, "wb") as target:
            for block in iter(lambda: response.read(CHUNK), b""):
                size += len(block)
                if size > source.size:
                    raise InputError(
                        f"{source.filename}: the download from {host_of(source.url)} is larger than the pinned "
                        f"{source.size} bytes (nothing was kept)"
                    )
                digest.update(block)
                target.write(block)
    except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as error:
        raise InputError(
            f"download of {source.filename} from {host_of(source.url)} broke off ({getattr(error, 'reason', error)}); "
            "run again (nothing was kept)"
        ) from None
    if size != source.size:
        raise InputError(
            f"{source.filename}: {size} bytes arrived from {host_of(source.url)}, expected {source.size}; run again "
            "(nothing was kept)"
        )
    if digest.hexdigest() != source.sha256:
        raise mismatch(f"{source.filename} from {source.url}", source.sha256, digest.hexdigest())


def fetch_archive(source: Source, folder: Path, log: Callable[[str], None]) -> tuple[Path, bool]:
    """The verified archive of ``source`` in ``folder``, downloaded only when absent or damaged.

    Returns the path and whether it was downloaded in this call.
    """
    path = folder / source.filename
    if path.is_file():
        actual = sha256_file(path)
        if actual == source.sha256:
            log(f"  {source.filename}: in the cache, SHA-256 verified")
            return path, False
        log(
            f"  {source.filename}: the cached copy has SHA-256 {actual}, expected {source.sha256}; downloading it again"
        )
    log(f"  {source.filename}: downloading {source.size / 1e6:.1f} MB from {host_of(source.url)}")
    write_file(path, lambda temporary: _stream_to(source, temporary))
    return path, True
