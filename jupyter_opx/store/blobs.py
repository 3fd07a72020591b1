"""Content-addressed blobs through fsspec.

A blob is stored once under ``sha256/<2 hex>/<62 hex>`` whatever how often it is
referenced. Writes are atomic (a temporary file renamed into place on a local
disk; a single object PUT on object stores, which is atomic there), and every
read re-hashes the bytes before handing them out, so a tampered or damaged
blob is refused before anything deserializes it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ..exceptions import CorruptBlobError, NotFoundError, StoreError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
BytesLike = bytes | bytearray | memoryview


def sha256_hex(data: Any) -> str:
    """The sha256 hex digest of a bytes-like object (buffers are not copied)."""
    return hashlib.sha256(memoryview(data)).hexdigest()


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a sha256 hex string, else raise (it becomes a path)."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise NotFoundError(f"not a blob digest: {digest!r}")
    return digest


class _WriteOnly:
    """What pyarrow's ``PythonFile`` asks of a write-only, non-seekable sink."""

    size = 0
    closed = False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        # the owner (the blob store, the offload's finish) closes what is underneath
        self.closed = True


class HashingWriter(_WriteOnly):
    """A binary file wrapper that hashes and counts the bytes written through it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0
        self.written = True
        self.closed = False
        self.sync_fd: int | None = None  # set for a durable blob on a local disk

    def write_back(self) -> None:
        """Send what was written so far to the disk (a durable blob on a local disk;
        else nothing), so that the final sync has only the tail left to wait for."""
        if self.sync_fd is not None:
            self._raw.flush()
            os.fdatasync(self.sync_fd)

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self._raw.write(view)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._raw.flush()

    @property
    def digest(self) -> str:
        """The sha256 hex digest of everything written so far."""
        return self._hash.hexdigest()


class OffloadWriter(_WriteOnly):
    """A write-only file that hands each chunk to a thread which writes it to ``sink``.

    With ``sink`` a :class:`HashingWriter`, pyarrow encodes the next pages
    (without the GIL) while the previous chunk is hashed (sha256, for the
    content address) and written: on two cores a large parquet blob costs
    about its encoding alone. Chunks are copied, since pyarrow reuses its
    buffer. :meth:`finish` waits for the thread and raises what it met.
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.closed = False
        self.size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="opx-blob-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        write_back = getattr(self.sink, "write_back", None)
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.sink.write(chunk)
                    if write_back is not None:
                        # this thread waits for the disk while pyarrow encodes: the
                        # sync before the blob is published then has little left to do
                        write_back()
                except BaseException as exc:  # reported by write() or finish()
                    self._error = exc

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise self._error
        chunk = bytes(memoryview(data))
        self._queue.put(chunk)
        self.size += len(chunk)
        return len(chunk)

    def finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    @classmethod
    @contextmanager
    def around(cls, sink: Any) -> Iterator[OffloadWriter]:
        """An offload writer over ``sink``, finished on leaving the block.

        When the block raises, the thread is still stopped but the block's
        error is the one reported (the writer's own, if any, came after it).
        """
        target = cls(sink)
        try:
            yield target
        except BaseException:
            with suppress(BaseException):
                target.finish()
            raise
        target.finish()


class BlobStore:
    """A content-addressed store of immutable byte strings.

    Parameters
    ----------
    url : str
        A local folder or any fsspec URL (``s3://bucket/prefix``, ``memory://x``).
    """

    def __init__(self, url: str) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = self.root.rstrip("/")

    def path(self, digest: str) -> str:
        """Where the blob with ``digest`` lives (no user input reaches here unchecked)."""
        check_digest(digest)
        return f"{self.root}/sha256/{digest[:2]}/{digest[2:]}"

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""
        return bool(self.fs.exists(self.path(digest)))

    def put(self, data: Any, digest: str | None = None) -> tuple[str, int, bool]:
        """Store ``data`` (bytes-like) and return ``(digest, size, written)``.

        ``written`` is False when identical content was already stored. Pass
        ``digest`` when the caller has just computed it, to skip re-hashing.
        """
        view = memoryview(data)
        digest = digest or sha256_hex(view)
        size = view.nbytes
        path = self.path(digest)
        try:
            if self.fs.exists(path) and self.fs.size(path) == size:
                return digest, size, False
            if self.local:
                self._put_local(path, view)
            else:
                self.fs.pipe_file(path, bytes(view))
        except OSError as exc:  # permissions, a read-only disk, a file in the way
            raise StoreError(
                f"cannot write blobs under {self.url} ({exc.strerror or exc}); "
                "make it writable or point 'artifacts' in .opx/config.toml elsewhere"
            ) from exc
        return digest, size, True

    @contextmanager
    def writer(self, durable: bool = False) -> Iterator[HashingWriter]:
        """A file-like sink that hashes what is written and commits it as a blob.

        Large artifacts (parquet, models) stream straight into a temporary file
        beside their final place instead of being held in memory; on leaving
        the block the file is renamed to its digest (or dropped if that content
        is already stored). Read ``writer.digest`` and ``writer.size`` after it.
        ``durable=True`` syncs the file to disk before it is renamed into place.
        """
        tmp_dir = f"{self.root}/tmp"
        tmp = f"{tmp_dir}/{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(tmp_dir, exist_ok=True)
            raw = self.fs.open(tmp, "wb")
        except OSError as exc:  # permissions, a read-only disk, a file in the way
            raise StoreError(
                f"cannot write blobs under {self.url} ({exc.strerror or exc}); "
                "make it writable or point 'artifacts' in .opx/config.toml elsewhere"
            ) from exc
        sink = HashingWriter(raw)
        if durable and self.local:
            sink.sync_fd = raw.fileno()
        try:
            with raw:
                yield sink
                if sink.sync_fd is not None:
                    # on disk before it is published: a 2xx after ingestion means durable
                    raw.flush()
                    os.fsync(sink.sync_fd)
            path = self.path(sink.digest)
            if self.fs.exists(path) and self.fs.size(path) == sink.size:
                self.fs.rm_file(tmp)
                sink.written = False
            elif self.local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, path)
            else:
                self.fs.mv(tmp, path)
        except BaseException:
            with suppress(OSError):
                if self.fs.exists(tmp):
                    self.fs.rm_file(tmp)
            raise

    def _put_local(self, path: str, view: memoryview) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(view)
            os.chmod(tmp, 0o444)  # blobs are immutable
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get(self, digest: str) -> bytes:
        """Return the blob's bytes after checking them against ``digest``.

        Raises
        ------
        NotFoundError
            No blob with this digest is stored.
        CorruptBlobError
            The stored bytes do not hash to ``digest``.
        """
        path = self.path(digest)
        try:
            data: bytes = self.fs.cat_file(path)
        except FileNotFoundError:
            raise NotFoundError(
                f"blob {digest[:12]} is missing from {self.url}; "
                "restore it from a backup or re-create the snapshot",
                digest=digest,
            ) from None
        if sha256_hex(data) != digest:
            raise self._corrupt(digest)
        return data

    def get_buffer(self, digest: str) -> Any:
        """Like :meth:`get` but, on a local disk, a memory map instead of a copy.

        Large parquet blobs are hashed and decoded straight from the page
        cache; the bytes are checked against ``digest`` before being returned.
        """
        buf = self.map_unverified(digest)
        self.check(buf, digest)
        return buf

    def map_unverified(self, digest: str) -> Any:
        """The blob's bytes (a memory map on a local disk) *before* verification.

        Only for callers that run :meth:`check` on it and discard whatever they
        derived from it when the check fails.
        """
        if not self.local:
            return self.get(digest)
        path = self.path(digest)
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size == 0:
                    return b""
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            return self.get(digest)  # raises the NotFoundError with its advice

    def check(self, buffer: Any, digest: str) -> None:
        """Raise :class:`CorruptBlobError` unless ``buffer`` hashes to ``digest``."""
        if sha256_hex(buffer) != digest:
            raise self._corrupt(digest)

    def _corrupt(self, digest: str) -> CorruptBlobError:
        return CorruptBlobError(
            f"blob {digest[:12]} is corrupt (its content no longer matches its hash) "
            "and was not loaded; restore it from a backup, or run 'opx verify' "
            "to list every damaged blob",
            digest=digest,
        )

    def verify(self, digest: str) -> bool:
        """Re-hash one blob: True when it is present and intact."""
        try:
            self.get(digest)
        except (NotFoundError, CorruptBlobError):
            return False
        return True

    def iter_digests(self) -> Iterator[str]:
        """Every digest stored under the root (temporary files excluded)."""
        base = f"{self.root}/sha256"
        if not self.fs.exists(base):
            return
        for path in self.fs.find(base):
            parts = path.rstrip("/").split("/")
            digest = parts[-2] + parts[-1]
            if _DIGEST.match(digest):
                yield digest
