"""Shared fixtures (throw-away TLS material, a valid base deployment to break in tests) and the xdist groups.

``make test`` runs the suite in parallel processes (pytest-xdist, ``-n auto --dist loadgroup``); the tests that
must not run at the same time as each other are in one group of :data:`SERIAL_GROUPS`, whose tests one process
runs one after another.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support import EXAMPLE

from orchestrator.config.selfsigned import generate

#: tests that must not run at the same time as each other, by where they live: every real-FreeSWITCH test (each
#: module starts a switch, or loads its deployment into the running one, on fixed SIP/ESL ports) and the tests
#: that share one built wheel (a module-scoped fixture: built once, not once per process), and the edge tests, which
#: share one Kamailio and its sipp nodes and change their state in order
SERIAL_GROUPS = {
    "tests/integration/": "freeswitch",
    "tests/test_packaging.py": "packaging",
    "tests/test_edge_kamailio.py": "kamailio",
}


def serial_group(nodeid: str) -> str | None:
    """The group whose tests one xdist process runs one after another, or None (any process, any time)."""
    return next((group for prefix, group in SERIAL_GROUPS.items() if nodeid.startswith(prefix)), None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the groups of :data:`SERIAL_GROUPS`, read from the test ids.

    (xdist's own ``xdist_group`` marks are not used: pytest 9.2's structured node ids lose the ``@group`` suffix
    xdist 3.8 relies on, so marked tests would silently spread over the processes: pytest-xdist issue 1386.)"""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SerialGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return serial_group(nodeid) or super()._split_scope(nodeid)

    return SerialGroups(config, log)


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
