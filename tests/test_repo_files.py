"""The repository's own files: the licence the metadata names, and state directories (which hold a
CA's private key) kept out of git."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APACHE_2_0_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"
"""MD5 of the Apache License 2.0 text as the ASF distributes it (https://www.apache.org/licenses/LICENSE-2.0.txt)."""


def test_the_license_file_is_the_apache_2_0_text_the_metadata_names() -> None:
    """LICENSE holds the full Apache License 2.0, unaltered, and pyproject.toml says Apache-2.0."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "Apache-2.0" in str(meta["license"])
    text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in text
    assert hashlib.md5(text, usedforsecurity=False).hexdigest() == APACHE_2_0_MD5


@pytest.mark.parametrize("path", [
    "tokyo/ca.key", "tokyo/ca.pem", "kanto/store/Otemachi.db", "ring/endpoints.json", "demo/kme/Alice.key",
    "my-net/ca.key", "my-net/kme/Alice.mldsa.key", "my-net/store/Alice.db-wal", "my-net/endpoints.json",
    ".venv/bin/python",
])
def test_state_directories_and_keys_are_ignored(path: str) -> None:
    """The README's state directories, and a CA key, node keys, stores and endpoints.json under any name."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{path} is not git-ignored"


def test_the_shipped_sources_are_not_ignored() -> None:
    """The ignore patterns catch no tracked example, source or test file."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    assert tracked == []
