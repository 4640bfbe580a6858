"""The wheel ships the templates (FreeSWITCH's and the console's) and assets, and an installed copy works from them alone."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import EXAMPLE_ENV, REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("hatchling") is None, reason="hatchling not installed")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
    )
    [whl] = out.glob("sipagent-*.whl")
    return whl


def test_wheel_contains_templates(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "templates").rglob("*.j2"))
    assert templates
    for t in templates:
        assert f"orchestrator/{t}" in names
    assert "orchestrator/cli.py" in names


def test_unpacked_wheel_renders(wheel: Path, example_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env_file = tmp_path / "e.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
    out = tmp_path / "conf"
    code = (
        "import orchestrator, sys; assert orchestrator.__file__.startswith(sys.argv[1]), orchestrator.__file__;"
        "from orchestrator.cli import run; sys.argv = sys.argv[1:2] + sys.argv[2:]; run()"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(site),
            "render",
            str(example_dir / "deployment.yaml"),
            "--env-file",
            str(env_file),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "dialplan" / "sipagent.xml").is_file()


def test_wheel_ships_the_console(wheel: Path, tmp_path: Path) -> None:
    """Every console template and asset (uPlot and its licence included) is in the wheel, and an unpacked copy
    serves the login page and the vendored chart library from it alone."""
    names = set(zipfile.ZipFile(wheel).namelist())
    console = REPO / "orchestrator" / "api" / "console"
    shipped = sorted(
        p.relative_to(REPO).as_posix() for p in console.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert any(s.endswith("uPlot.iife.min.js") for s in shipped) and any(s.endswith("uplot/LICENSE") for s in shipped)
    for name in shipped:
        assert name in names, name
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys, asyncio, httpx, types;"
        "import orchestrator; assert orchestrator.__file__.startswith(sys.argv[1]), orchestrator.__file__;"
        "from orchestrator.api.http import create_app;"
        "app = create_app(types.SimpleNamespace(tracker=None, store=None), 't1', console_token='t2');"
        "c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url='http://x');"
        "r1 = asyncio.run(c.get('/console/login'));"
        "c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url='http://x');"
        "r2 = asyncio.run(c.get('/console/static/vendor/uplot/uPlot.iife.min.js'));"
        "assert r1.status_code == 200 and 'Log in' in r1.text, r1.status_code;"
        "assert r2.status_code == 200 and r2.content.startswith(b'/*! https://github.com/leeoniya/uPlot (v1.6.32)');"
        "print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
