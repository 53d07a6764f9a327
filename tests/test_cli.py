"""The commands as a user runs them: `simulate` writes an accounts file, `check` reads it and sets exit codes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from monitor.simulator.generate import generate_world, write_accounts_file
from tests.conftest import Sim, SimFactory

MONITOR = [sys.executable, "-m", "monitor"]


async def _run(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *MONITOR, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_simulate_writes_an_accounts_file_that_check_reads(tmp_path: Path) -> None:
    accounts = tmp_path / "sim.toml"
    sim = await asyncio.create_subprocess_exec(
        *MONITOR, "simulate", "--port", "0", "--accounts", "8", "--write-accounts", str(accounts),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        ready = (await asyncio.wait_for(sim.stdout.readline(), timeout=30)).decode()
        assert "simulator listening on http://127.0.0.1:" in ready
        url = ready.split()[3]
        code, out, err = await _run("check", "-c", str(accounts))
        assert code == 0, out + err
        assert out.count(" ok: ") == 8
        assert "holds literal secrets for 8 account(s)" in err
        assert "clock offset to Bitget: " in out
        async with aiohttp.ClientSession() as session:
            await session.post(f"{url}/_sim/accounts/sim-002", json={"revoked": True})
        code, out, _ = await _run("check", "-c", str(accounts))
        assert code == 1
        assert "sim-002  hmac" in out and "FAILED (40037)" in out
        assert "fix: the key was deleted or mistyped: create a read-only key and update api_key" in out
        assert out.count(" ok: ") == 7
    finally:
        sim.terminate()
        assert await asyncio.wait_for(sim.wait(), timeout=10) == 0


async def test_check_reports_each_failing_account_with_its_code_and_fix(make_sim: SimFactory, tmp_path: Path) -> None:
    sim: Sim = await make_sim(accounts=6)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    await sim.control("POST", "/_sim/accounts/sim-001", {"passphrase": "changed"})
    await sim.control("POST", "/_sim/accounts/sim-002", {"ips": ["198.51.100.1"]})
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 1
    assert "sim-001: /api/v2/spot/account/info: Bitget 40012 (HTTP 400): apikey/password is incorrect" in out
    assert "fix: wrong passphrase: set passphrase to the one chosen when the key was created" in out
    assert "sim-002: /api/v2/spot/account/info: Bitget 40018 (HTTP 400): Invalid IP" in out
    assert "fix: the key is bound to other IP addresses" in out
    assert out.count(" ok: ") == 4


async def test_check_warns_about_keys_that_can_trade_or_are_not_ip_bound(make_sim: SimFactory, tmp_path: Path) -> None:
    sim: Sim = await make_sim(accounts=10)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    await sim.control("POST", "/_sim/accounts/sim-003", {"permissions": ["readonly", "withdraw"]})
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 0
    assert "warning: sim-003: the key can withdraw; a monitor needs a read-only key" in out
    assert "warning: sim-008: the key can trade; a monitor needs a read-only key" in out
    assert "warning: sim-005: the key is not bound to an IP address" in out


@pytest.mark.parametrize("content", ["[[accounts]]\nname = 1\n", "not toml at all ["])
async def test_check_exits_2_on_an_invalid_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(content)
    code, out, err = await _run("check", "-c", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {path}:")


async def test_an_unreachable_bitget_fails_every_account_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    write_accounts_file(generate_world(2), path, "http://127.0.0.1:9")
    code, out, err = await _run("check", "-c", str(path))
    assert code == 1
    assert out.count("FAILED (ConnectionFailed)") == 2
    assert "fix: cannot connect to bitget_url" in out
    assert "cannot read Bitget's clock" in err
