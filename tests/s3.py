"""A bucket on the test session's S3 endpoint (moto's server, see the `s3` fixture in conftest)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class S3Bucket:
    endpoint: str
    name: str

    @classmethod
    def create(cls, endpoint: str, name: str) -> S3Bucket:
        bucket = cls(endpoint, name)
        bucket.fs().mkdir(name)
        return bucket

    def fs(self) -> Any:
        """A client of the test's own (not mira's), so nothing it caches can hide what mira wrote."""
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key=os.environ["MIRA_TEST_S3_KEY"],
                                 secret=os.environ["MIRA_TEST_S3_SECRET"], skip_instance_cache=True)

    def storage(self) -> dict[str, Any]:
        """The config's `storage` section for this endpoint: credentials named, never written."""
        return {"s3": {"options": {"endpoint_url": self.endpoint},
                       "options_from_env": {"key": "MIRA_TEST_S3_KEY", "secret": "MIRA_TEST_S3_SECRET"}}}

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"

    def upload(self, local: Path, key: str) -> str:
        self.fs().put_file(str(local), f"{self.name}/{key}")
        return self.url(key)

    def keys(self, prefix: str = "") -> list[str]:
        fs = self.fs()
        root = f"{self.name}/{prefix}".rstrip("/")
        return sorted(k[len(self.name) + 1:] for k in fs.find(root)) if fs.exists(root) else []

    def read(self, key: str) -> bytes:
        return self.fs().cat_file(f"{self.name}/{key}")
