"""A local S3-compatible server (moto's, on 127.0.0.1) for the Parquet store's object-store
path: pyarrow's S3 client talks to it over HTTP as it would to S3."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

# what pyarrow's S3 client (the AWS SDK) reads; the metadata service is never asked
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "modelmon-test",
    "AWS_SECRET_ACCESS_KEY": "modelmon-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class LocalS3:
    host: str
    port: int
    server: Any = None

    def stop(self) -> None:
        """The server goes away (connections refused); what it stored stays in this
        process, for restart()."""
        self.server.stop()

    def restart(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()

    def uri(self, bucket: str, prefix: str = "", credentials: str = "") -> str:
        """`credentials`: "key:secret" written into the URI (else from the environment)."""
        path = f"{bucket}/{prefix}".rstrip("/")
        user = f"{credentials}@" if credentials else ""
        server = f"endpoint_override={self.host}:{self.port}&scheme=http&region=us-east-1"
        return f"s3://{user}{path}?{server}"

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=S3_ENV["AWS_ACCESS_KEY_ID"],
            secret_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=f"{self.host}:{self.port}",
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )

    def make_bucket(self, bucket: str) -> None:
        self.filesystem().create_dir(bucket)

    def keys(self, bucket: str) -> list[str]:
        """Every object's key (directory markers left out)."""
        selector = pafs.FileSelector(bucket, recursive=True, allow_not_found=True)
        infos = self.filesystem().get_file_info(selector)
        return sorted(i.path[len(bucket) + 1 :] for i in infos if i.type == pafs.FileType.File)


@contextlib.contextmanager
def local_s3() -> Iterator[LocalS3]:
    """The server on a free loopback port, with S3_ENV in this process's environment (the
    AWS SDK reads credentials from there); both undone on exit."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = LocalS3(host, port, server)
        yield s3
    finally:
        with contextlib.suppress(Exception):  # stopped by the test already
            s3.server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
