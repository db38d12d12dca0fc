"""Resumable, verified, atomic downloads and archive extraction.

A download streams into ``<name>.part`` (continuing a previous partial file with an HTTP
``Range`` request), is checked against the expected size and checksum, fsynced, and only then
renamed to its final name: a file under the final name is always complete and verified.
"""

import hashlib
import os
import pathlib
import shutil
import tarfile
import tempfile
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
):
    """Downloads ``url`` to ``destination``, resuming a partial download, verified and atomic.

    Args:
        url: where to fetch from.
        destination: the final path.
        size: the expected size in bytes, or None to trust the server's ``Content-Length``.
        checksum: the expected hex digest, or None when unknown.
        algorithm: the checksum's hash algorithm. Defaults to "sha256".
        progress: ``callable(done_bytes, total_bytes_or_None)`` called as bytes arrive.
        opener: ``callable(request) -> response``. Defaults to ``urllib.request.urlopen``.
        chunk_size: bytes per read. Defaults to 1 MiB.

    Returns:
        The destination path.

    Raises:
        DownloadError: if the bytes received do not match the expected size or checksum. A
            wrong checksum also deletes the partial file, so the next attempt starts over.
    """
    opener = opener or urllib.request.urlopen
    destination = pathlib.Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
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
    expected = size if size is not None else total
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
    """Extracts a tar archive into ``target`` atomically, folder by folder.

    Everything is unpacked into a temporary folder beside ``target`` first; then each top-level
    entry found under ``members_under`` replaces its namesake in ``target`` with one rename.

    Returns:
        The names of the top-level entries installed.
    """
    target = pathlib.Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".extract-") as scratch:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        root = pathlib.Path(scratch) / members_under
        installed = []
        for entry in sorted(root.iterdir()):
            final = target / entry.name
            if final.exists():
                old = target / f".old-{entry.name}"
                os.replace(final, old)
                os.replace(entry, final)
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            else:
                os.replace(entry, final)
            installed.append(entry.name)
    return installed
