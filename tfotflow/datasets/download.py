"""Resumable, verified, atomic downloads and archive extraction.

A download streams into ``<name>.part`` (continuing a previous partial file with an HTTP
``Range`` request), is checked against the expected size and checksum, fsynced, and only then
renamed to its final name: a file under the final name is always complete and verified.
"""

import functools
import hashlib
import os
import pathlib
import tarfile
import tempfile
import urllib.error
import urllib.request


class DownloadError(OSError):
    """A download was incomplete or corrupted; nothing was left under the final name."""


def file_digest(path, algorithm="sha256", chunk_size=1 << 20):
    """The hex digest of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url,
    destination,
    *,
    size=None,
    checksum=None,
    algorithm="sha256",
    progress=None,
    opener=None,
    chunk_size=1 << 20,
    timeout=30.0,
    attempts=3,
):
    """Downloads ``url`` to ``destination``, resuming a partial download, verified and atomic.

    A connection that fails or stays silent for ``timeout`` seconds (connecting or between
    reads) is tried again, resuming from the bytes already received, up to ``attempts`` times.

    Args:
        url: where to fetch from.
        destination: the final path.
        size: the expected size in bytes, or None to trust the server's ``Content-Length``.
        checksum: the expected hex digest, or None when unknown.
        algorithm: the checksum's hash algorithm. Defaults to "sha256".
        progress: ``callable(done_bytes, total_bytes_or_None)`` called as bytes arrive.
        opener: ``callable(request) -> response``. Defaults to ``urllib.request.urlopen``
            with ``timeout``.
        chunk_size: bytes per read. Defaults to 1 MiB.
        timeout: seconds to wait for a connection or for the next bytes. Defaults to 30.
        attempts: connections to try before giving up. Defaults to 3.

    Returns:
        The destination path.

    Raises:
        DownloadError: if no attempt completes (the partial file is kept for the next run), or
            the bytes received do not match the expected size or checksum. A wrong checksum
            also deletes the partial file, so the next attempt starts over.
    """
    if opener is None:
        opener = functools.partial(urllib.request.urlopen, timeout=timeout)
    destination = pathlib.Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            done, total = _transfer(url, part, size, opener, progress, chunk_size)
            break
        except (OSError, urllib.error.URLError) as error:  # timeouts and refusals included
            if attempt == attempts:
                raise DownloadError(
                    f"could not download {url}: {attempts} attempts failed (timeout "
                    f"{timeout:g} s each), the last with {type(error).__name__}: {error}. "
                    f"The partial file {part} is kept and the next attempt resumes it"
                ) from error
    return _finish(
        url, part, destination, done, size if size is not None else total, checksum, algorithm
    )


def _transfer(url, part, size, opener, progress, chunk_size):
    """One connection: appends to ``part`` from where it stops; returns (bytes, total)."""
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    with opener(request) as response:
        status = getattr(response, "status", 200)
        if done and status != 206:  # the server ignored the range: start over
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else size
        with open(part, "ab" if done else "wb") as handle:
            while True:
                chunk = response.read(chunk_size)
                if not chunk:
                    break
                handle.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            handle.flush()
            os.fsync(handle.fileno())
    return done, total


def _finish(url, part, destination, done, expected, checksum, algorithm):
    """Checks the size and checksum of ``part`` and renames it to ``destination``."""
    if expected is not None and done != expected:
        raise DownloadError(
            f"incomplete download of {url}: received {done} of {expected} bytes; "
            f"the partial file {part} is kept and the next attempt resumes it"
        )
    if checksum is not None:
        received = file_digest(part, algorithm)
        if received != checksum.lower():
            part.unlink()
            raise DownloadError(
                f"corrupted download of {url}: {algorithm} {received}, expected {checksum}; "
                "the file was deleted"
            )
    os.replace(part, destination)
    return destination


def extract_tar(archive, target, *, members_under=""):
    """Extracts a tar archive into ``target``, file by file, deleting nothing else.

    Everything is unpacked into a temporary folder beside ``target`` first; then every file
    found under ``members_under`` replaces its namesake in ``target`` with one rename. Files
    in ``target`` that the archive does not hold (a user's own splits, notes) are kept.

    Returns:
        The names of the top-level entries installed.
    """
    target = pathlib.Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".extract-") as scratch:
        with tarfile.open(archive) as tar:
            _extract_data(tar, scratch)
        root = pathlib.Path(scratch) / members_under
        for source in sorted(root.rglob("*")):
            if source.is_file():
                final = target / source.relative_to(root)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, final)
        return [entry.name for entry in sorted(root.iterdir())]


def _extract_data(tar, folder):
    """Extracts the open ``tar`` into ``folder`` with tarfile's ``data`` filter: no absolute
    paths, nothing written or linked outside ``folder``, no devices. On a Python without
    extraction filters (before 3.10.12 and 3.11.4) the members are checked here first, more
    strictly: regular files and folders only, each inside ``folder``; anything else raises
    :class:`tarfile.TarError` naming the member."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    root = os.path.realpath(folder)
    for member in tar.getmembers():
        path = os.path.realpath(os.path.join(root, member.name))
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(
                f"the archive's member {member.name!r} is neither a file nor a folder"
            )
        if os.path.commonpath([root, path]) != root:
            raise tarfile.TarError(
                f"the archive's member {member.name!r} would be written outside {folder}"
            )
    tar.extractall(folder)
