"""Shared fixtures: throw-away TLS material and a valid base deployment to break in tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import EXAMPLE

from orchestrator.config.selfsigned import generate


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a certificate for sip.test (and 127.0.0.1) and its key; plus an unrelated second key."""
    d = tmp_path_factory.mktemp("tls")
    generate(d, ["sip.test"], ["127.0.0.1"])
    other = tmp_path_factory.mktemp("tls-other")
    generate(other, ["other.test"])
    shutil.copy(other / "other.test.key", d / "unrelated.key")
    (d / "unrelated.key").chmod(0o600)
    return d


@pytest.fixture()
def example_dir(tmp_path: Path) -> Path:
    """A copy of examples/ with fresh TLS files where the example expects them."""
    dst = tmp_path / "examples"
    dst.mkdir()
    shutil.copy(EXAMPLE, dst / "deployment.yaml")
    generate(dst / "tls", ["sip.example.com"])
    return dst
