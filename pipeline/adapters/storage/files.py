"""Storage in a local directory (``STORAGE_URL=file:///path``), the embedded default.

Files are written to a temporary name and renamed, so a reader never sees half
a file and a repeated upload atomically replaces the previous one. Their URLs
are served by the API's signed ``/files/<token>`` route.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline.adapters.storage.base import StoredObject
from pipeline.core.errors import StorageError


class FileStorage:
    def __init__(self, root: Path):
        self.root = root
        self._real_root = root.resolve()  # keys must resolve inside it (one instance per process)

    @classmethod
    def from_url(cls, url: str) -> FileStorage:
        return cls(Path(unquote(urlparse(url).path)))

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path == self._real_root or not path.is_relative_to(self._real_root):
            raise StorageError(f"storage key escapes the storage root: {key!r}")
        return path

    def put(self, key: str, data: bytes, media_type: str) -> StoredObject:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"could not write {key}: {exc}") from exc
        return StoredObject(key, len(data), media_type, hashlib.sha256(data).hexdigest())

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def path(self, key: str) -> Path:
        """The local file of a key (the API streams it)."""
        return self._path(key)

    def signed_url(self, key: str, expires_s: int) -> str | None:
        return None

    def delete_prefix(self, prefix: str, keep: Collection[str] = ()) -> int:
        target = self._path(prefix.rstrip("/"))
        if keep and target.is_dir():
            kept = {self._path(key) for key in keep}
            count = 0
            for path in sorted(target.rglob("*"), reverse=True):  # a folder's files before the folder
                if path.is_dir():
                    if not any(path.iterdir()):
                        path.rmdir()
                elif path not in kept:
                    path.unlink(missing_ok=True)
                    count += 1
            return count
        if target.is_dir():
            count = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target, ignore_errors=True)
            return count
        if target.is_file():
            target.unlink()
            return 1
        return 0

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage root {self.root} is not usable: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage root {self.root} is not writable")
