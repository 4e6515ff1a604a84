"""Cold storage: where tiered day partitions live as Parquet (``docs/contracts.md`` section 7).

One small interface over ``file://`` (a directory) and ``s3://bucket/prefix``
(AWS, MinIO, R2 or the local moto server, by ``AWS_ENDPOINT_URL``). Objects
are written whole: a ``file://`` object lands under a temporary name and is
renamed into place, and an S3 upload is complete or absent, so a reader
never sees half an object.

Keys are relative to the store's root, with ``/`` separators
(``event_records/day=2026-11-25/part-00000.parquet``).

Storage classes (the seed's warm and cold tiers) exist on S3: an object is
moved to a cheaper class by copying it onto itself with the new class. A
``file://`` store has one class; moving records the tier in the catalog
only. Classes that need a restore before a read (GLACIER, DEEP_ARCHIVE)
are refused: replay reads cold days directly.

A ``file://`` object is written under ``<root>/.incoming/`` and renamed
into place, so a table's directory never holds a partial file.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import boto3
import pyarrow.fs as pafs
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from mediation.errors import ServiceError
from mediation.settings import (
    DEFAULT_AWS_REGION,
    LOOPBACK_HOSTS,
    READABLE_STORAGE_CLASSES,
    Settings,
)

__all__ = [
    "READABLE_STORAGE_CLASSES",
    "ColdStore",
    "ColdStoreError",
    "FileColdStore",
    "S3ColdStore",
    "cold_store_for",
    "open_cold_store",
]

# Where a file:// store writes objects before renaming them into place.
_INCOMING = ".incoming"


class ColdStoreError(ServiceError):
    """The cold store cannot be reached or refused an operation."""

    code = "cold_store_failed"


class ColdStore(Protocol):
    url: str

    def upload(self, local: Path, key: str) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def location(self, key: str) -> str: ...

    def delete(self, key: str) -> None:
        """Remove the object; nothing happens when it is already gone."""
        ...

    def set_storage_class(self, key: str, storage_class: str) -> str:
        """Move the object to ``storage_class``; the class it is in now."""
        ...

    def arrow_source(self, key: str) -> Any:
        """Something ``pyarrow.parquet`` reads with random access (row groups only)."""
        ...


class FileColdStore:
    def __init__(self, root: Path):
        self.root = root
        self.url = root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ColdStoreError(f"key {key!r} leaves the store's root")
        return path

    def _write(self, key: str, fill: Any) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, outside every table's directory (a half-written file
        # left by a crash there would break readers that take the directory).
        incoming = self.root / _INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        temporary = incoming / f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}"
        fill(temporary)
        os.replace(temporary, path)  # atomic: whole or absent

    def upload(self, local: Path, key: str) -> None:
        self._write(key, lambda target: shutil.copyfile(local, target))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda target: target.write_bytes(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ColdStoreError(f"{self.location(key)} does not exist") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def location(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def set_storage_class(self, key: str, storage_class: str) -> str:
        if not self.exists(key):
            raise ColdStoreError(f"{self.location(key)} does not exist")
        return "FILE"  # a directory has one class; the catalog records the tier

    def arrow_source(self, key: str) -> str:
        path = self._path(key)
        if not path.is_file():
            raise ColdStoreError(f"{self.location(key)} does not exist")
        return str(path)


class S3ColdStore:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None = None,
        *,
        region: str = DEFAULT_AWS_REGION,
        credentials_set: bool = False,
    ):
        """``region``, ``credentials_set``: ``Settings.aws_region`` and ``.aws_credentials_set``."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._region = region
        local: dict[str, str] = {}
        if _is_loopback(endpoint_url) and not credentials_set:
            # The local S3 server (`mediation dev up`) takes any credentials;
            # boto3 refuses to sign without some.
            local = {
                "aws_access_key_id": "local",
                "aws_secret_access_key": "local",
                "region_name": region,
            }
        self._client = boto3.client("s3", endpoint_url=endpoint_url, **local)
        self._endpoint_url = endpoint_url
        self._local_credentials = bool(local)
        self._arrow_fs: Any = None  # made on first use

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, call: Any) -> Any:
        try:
            return call()
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            # BotoCoreError: the endpoint is unreachable (connection refused,
            # timeouts); callers see one error type either way.
            raise ColdStoreError(f"{what} {self.location(key)}: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (local stacks; production buckets exist)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call(
                "create bucket for", "", lambda: self._client.create_bucket(Bucket=self.bucket)
            )
        except BotoCoreError as exc:
            raise ColdStoreError(f"reach {self.url}: {exc}") from exc

    def upload(self, local: Path, key: str) -> None:
        self._call(
            "upload to",
            key,
            lambda: self._client.upload_file(str(local), self.bucket, self._key(key)),
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(
            "write",
            key,
            lambda: self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data),
        )

    def get_bytes(self, key: str) -> bytes:
        response = self._call(
            "read", key, lambda: self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        )
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise ColdStoreError(f"look up {self.location(key)}: {exc}") from exc
        except BotoCoreError as exc:
            raise ColdStoreError(f"look up {self.location(key)}: {exc}") from exc
        return True

    def location(self, key: str) -> str:
        return f"{self.url}/{key}"

    def delete(self, key: str) -> None:
        self._call(
            "delete",
            key,
            lambda: self._client.delete_object(Bucket=self.bucket, Key=self._key(key)),
        )

    def set_storage_class(self, key: str, storage_class: str) -> str:
        if storage_class not in READABLE_STORAGE_CLASSES:
            raise ColdStoreError(
                f"storage class {storage_class!r} cannot be read without a restore; use one of "
                f"{', '.join(sorted(READABLE_STORAGE_CLASSES))}"
            )
        source = {"Bucket": self.bucket, "Key": self._key(key)}
        # A managed copy (multipart above its threshold) onto the same key.
        self._call(
            "change the storage class of",
            key,
            lambda: self._client.copy(
                source,
                self.bucket,
                self._key(key),
                ExtraArgs={"StorageClass": storage_class, "MetadataDirective": "COPY"},
            ),
        )
        head = self._call("look up", key, lambda: self._client.head_object(**source))
        return str(head.get("StorageClass", "STANDARD"))

    def arrow_source(self, key: str) -> Any:
        """A file Arrow reads by range requests: a key lookup fetches its row groups only."""
        if self._arrow_fs is None:
            options: dict[str, Any] = {"region": self._region}
            if self._endpoint_url:
                parts = urlsplit(self._endpoint_url)
                options |= {"endpoint_override": parts.netloc, "scheme": parts.scheme or "https"}
            if self._local_credentials:
                options |= {"access_key": "local", "secret_key": "local"}
            self._arrow_fs = pafs.S3FileSystem(**options)
        try:
            return self._arrow_fs.open_input_file(f"{self.bucket}/{self._key(key)}")
        except OSError as exc:
            raise ColdStoreError(f"read {self.location(key)}: {exc}") from exc


def _is_loopback(url: str | None) -> bool:
    return bool(url) and urlsplit(url).hostname in LOOPBACK_HOSTS


def open_cold_store(
    url: str,
    endpoint_url: str | None = None,
    *,
    region: str = DEFAULT_AWS_REGION,
    credentials_set: bool = False,
) -> FileColdStore | S3ColdStore:
    """The store at ``url`` (``file:///abs/path`` or ``s3://bucket/prefix``)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileColdStore(Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        return S3ColdStore(
            parts.netloc,
            parts.path,
            endpoint_url,
            region=region,
            credentials_set=credentials_set,
        )
    raise ColdStoreError(
        f"cold storage URL must be file:///abs/path or s3://bucket/prefix: {url!r}"
    )


def cold_store_for(settings: Settings) -> FileColdStore | S3ColdStore:
    """The store at ``COLD_STORAGE_URL``, with the settings' S3 endpoint, region, credentials."""
    return open_cold_store(
        settings.cold_storage_url,
        settings.aws_endpoint_url,
        region=settings.aws_region,
        credentials_set=settings.aws_credentials_set,
    )
