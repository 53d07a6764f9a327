"""Deployment: the wheel carries what the monitor needs and migrates outside the source tree; the Dockerfile and
docker-compose.yml have the promised shape; the container's commands run against PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.simulator.generate import write_accounts_file
from monitor.store.migrations import head as migrations_head
from tests.conftest import SimFactory

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_templates_static_files_and_migrations(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(ROOT)], check=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("bitget_monitor-*.whl")
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    # --ignore-installed: never touch the test environment's own (editable) install of the project
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed",
                    "--prefix", str(env), str(wheel)], check=True)  # fmt: skip
    # The dependencies come from the test environment (no download), after the installed wheel on the path.
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    (site / "test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = env / "bin" / "python"
    where = tmp_path / "elsewhere"
    where.mkdir()
    probe = (
        "import monitor, web, monitor.alerts.messages as m, monitor.store.migrations as g; from pathlib import Path;"
        "print(monitor.__file__); print(g.MIGRATIONS_DIR);"
        "assert (Path(web.__file__).parent / 'templates' / 'overview.html.j2').exists();"
        "assert (Path(web.__file__).parent / 'static' / 'style.css').exists();"
        "assert (m.BUILTIN / 'short.j2').exists();"
        "import monitor.reports.render as r; assert (r.BUILTIN / 'report_short.j2').exists()"
    )
    out = subprocess.run([str(python), "-c", probe], check=True, cwd=where, capture_output=True, text=True).stdout
    installed, migrations = out.splitlines()
    assert installed.startswith(str(env)) and migrations == str(env / "share" / "bitget-monitor" / "alembic")
    url = f"sqlite:///{where}/monitor.db"
    done = subprocess.run([str(python), "-m", "monitor", "db", "--database-url", url, "upgrade"], cwd=where,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"revision {migrations_head()}, up to date" in done.stdout  # every migration came with the wheel


def test_the_image_and_the_compose_file_have_the_promised_shape() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim$", docker, re.M)
    user = re.search(r"^USER (\S+)$", docker, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", docker, re.M)
    assert 'ENTRYPOINT ["bitget-monitor"]' in docker
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db, migrate, monitor = (compose["services"][n] for n in ("db", "migrate", "monitor"))
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount
    assert migrate["command"] == ["db", "upgrade"] and migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert monitor["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert monitor["depends_on"]["db"]["condition"] == "service_healthy"
    assert "--no-migrate" in monitor["command"]
    assert any(v.endswith(":/config/accounts.toml:ro") for v in monitor["volumes"])
    assert monitor["env_file"] == migrate["env_file"] == ".env"
    assert all(p.startswith("127.0.0.1:") for p in monitor["ports"])
    for service in (migrate, monitor):
        assert service["environment"]["MONITOR_DATABASE_URL"].startswith("postgresql+psycopg://")
    example = (ROOT / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=" in example and ".env" in (ROOT / ".gitignore").read_text().split()


async def test_the_containers_commands_run_against_postgresql(
    make_sim: SimFactory, tmp_path: Path, db_url: str
) -> None:
    from aiohttp.test_utils import unused_port

    if db_url.startswith("sqlite"):
        pytest.skip("the containers run against PostgreSQL (the sqlite run of this test has nothing to add)")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    sim = await make_sim(accounts=6)
    config = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, config, sim.url)
    port = unused_port()
    text = config.read_text().replace("[[accounts]]", f'[web]\nlisten = "0.0.0.0:{port}"\n[[accounts]]', 1)
    # readyz wants fresh accounts: first reads spread over 2 s rather than the default 30 s
    config.write_text(text.replace("[monitor]\n", '[monitor]\npoll_interval = "2s"\n', 1))
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url}

    def command(service: str) -> list[str]:
        args = compose["services"][service]["command"]
        return [sys.executable, "-m", "monitor", *(str(config) if a == "/config/accounts.toml" else a for a in args)]

    pipes: dict[str, Any] = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
    migrate = await asyncio.create_subprocess_exec(*command("migrate"), env=env, cwd=tmp_path, **pipes)
    out, err = await asyncio.wait_for(migrate.communicate(), 60)
    assert migrate.returncode == 0, err.decode()
    assert "up to date" in out.decode()
    monitor = await asyncio.create_subprocess_exec(*command("monitor"), env=env, cwd=tmp_path,
                                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    try:
        ready: dict[str, Any] = {}
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                await asyncio.sleep(0.2)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        ready = await response.json()
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    continue
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
        assert ready.get("ready") is True, ready
    finally:
        monitor.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(monitor.communicate(), 30)
    assert monitor.returncode == 0, err.decode()[-2000:]
