"""The commands as a user runs them: `simulate` writes an accounts file, `check` reads it and sets exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.simulator.generate import generate_world, write_accounts_file
from tests.conftest import Sim, SimFactory
from tests.launch import MONITOR
from tests.launch import cli as _run


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
    await sim.control("POST", "/_sim/close", {"account": "sim-005", "symbol": "ETHUSDT"})  # 1 position left
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 1
    counts = {line.split()[0]: line.split("; ")[-1] for line in out.splitlines() if " ok: " in line}
    assert (counts["sim-005"], counts["sim-004"]) == ("1 position", "3 positions"), out
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


RULES_OF_EVERY_TYPE = """
[[rules]]
name = "liquidation"
type = "liquidation_distance"
warning = "15%"
critical = "7%"
clear = "2%"
[[rules]]
name = "margin"
type = "margin_ratio"
warning = "60%"
critical = 0.8
[[rules]]
name = "position-loss"
type = "unrealized_pnl"
warning = -500
critical = -1000
[[rules]]
name = "position-loss-share"
type = "unrealized_pnl"
critical = "-50%"
for = "2m"
[[rules]]
name = "account-loss"
type = "account_pnl"
warning = "-10%"
[[rules]]
name = "drawdown"
type = "drawdown"
warning = "5%"
critical = "10%"
scope = "portfolio"
[[rules]]
name = "unreachable"
type = "unreachable"
warning = 2
critical = 3
[[rules]]
name = "key"
type = "key_permissions"
warning = ["trade", "no_ip_binding"]
critical = ["withdraw"]
"""


async def test_check_prints_every_rules_levels_in_words(make_sim: SimFactory, tmp_path: Path) -> None:
    sim: Sim = await make_sim(accounts=2)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 0
    assert out.splitlines()[-6:-2] == [
        "rules (the defaults: the file has no [[rules]]):",
        "  liquidation: warning under 15 % from liquidation, critical under 7 %; lets go 2 % past its level",
        "  margin_ratio: warning at a margin ratio of 0.6 or more, critical at 0.8 (Bitget liquidates at 1); lets go "
        "0.05 past its level",
        "  unreachable: critical after 3 poll intervals without good data; a permanent Bitget error (key, IP, "
        "permission) is critical at once",
    ]
    path.write_text(path.read_text() + RULES_OF_EVERY_TYPE)
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 0
    start = out.splitlines().index("rules:")
    assert out.splitlines()[start + 1 : start + 9] == [
        "  liquidation: warning under 15 % from liquidation, critical under 7 %; lets go 2 % past its level",
        "  margin: warning at a margin ratio of 0.6 or more, critical at 0.8 (Bitget liquidates at 1)",
        "  position-loss: warning at a position loss of 500 or more in its margin coin, critical at 1,000",
        "  position-loss-share: critical at a position loss of 50 % of its margin or more; fires once it holds for "
        "2 min",
        "  account-loss: warning at an unrealized loss of 10 % of equity or more",
        "  drawdown: warning 5 % or more below the 24 h peak of the selected accounts' total equity, critical 10 %",
        "  unreachable: warning after 2 poll intervals without good data, critical after 3; a permanent Bitget error "
        "(key, IP, permission) is critical at once",
        "  key: warning when the key can trade or is not bound to an IP address; critical when the key can withdraw",
    ]


async def test_check_exits_2_on_a_level_in_the_wrong_unit(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    write_accounts_file(generate_world(1), path, "http://127.0.0.1:9")
    path.write_text(
        path.read_text() + '[[rules]]\nname = "liquidation"\ntype = "liquidation_distance"\nwarning = 0.15\n'
        "critical = 0.07\n"
    )
    code, out, err = await _run("check", "-c", str(path))
    assert (code, out) == (2, "")
    assert "rules[0].warning: 0.15 is ambiguous: warning is in percent, so this reads as 0.15 %" in err
    assert '(write "15%" for 15 %, or "0.15%" if you mean 0.15 %)' in err


@pytest.mark.parametrize("with_accounts_file", [False, True], ids=["demo", "run"])
async def test_make_run_serves_on_the_port_it_is_given(
    make_sim: SimFactory, tmp_path: Path, with_accounts_file: bool
) -> None:
    import signal
    import subprocess

    from aiohttp.test_utils import unused_port

    root = Path(__file__).resolve().parent.parent
    dry = subprocess.run(["make", "-n", "run", "PORT=8090"], cwd=root, capture_output=True, text=True, check=True)
    assert "scripts/run.py --port 8090" in dry.stdout
    if with_accounts_file:
        sim: Sim = await make_sim(accounts=2)
        write_accounts_file(sim.world, tmp_path / "accounts.toml", sim.url)  # [web] listen: the default, 8080
    port = unused_port()
    with (tmp_path / "out.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(root / "scripts" / "run.py"), "--port", str(port), cwd=tmp_path, stdout=log, stderr=log
        )
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(600):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                            if answer.status == 200:
                                break
                    assert process.returncode is None, (tmp_path / "out.log").read_text()
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"nothing answered on port {port}: {(tmp_path / 'out.log').read_text()}")
            process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), timeout=30)
            assert code == 0, (tmp_path / "out.log").read_text()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert ("starting the demo" in (tmp_path / "out.log").read_text()) is not with_accounts_file


# -- the database commands ------------------------------------------------------------------------------------

ACCOUNTS = """[monitor]
database_url = "{url}"
[[accounts]]
name = "alpha"
api_key = "k"
api_secret = "s"
passphrase = "p"
[[accounts]]
name = "beta-main"
api_key = "k"
api_secret = "s"
passphrase = "p"
"""


@pytest.mark.parametrize(
    "command",
    [["check"], ["run"], ["once"], ["notify-test"], ["db", "upgrade"], ["db", "current"], ["db", "downgrade", "base"],
     ["silence", "add", "--account", "a", "--for", "1h", "--reason", "r"], ["silence", "list"],
     ["silence", "remove", "1"]],
)  # fmt: skip
def test_dash_c_after_the_subcommand_names_the_file_for_every_command(command: list[str]) -> None:
    from monitor.cli import build_parser

    assert build_parser().parse_args([*command, "-c", "mine.toml"]).config == Path("mine.toml")
    if command[0] in ("db", "silence"):  # before the subcommand, as before
        args = build_parser().parse_args([command[0], "-c", "mine.toml", "--database-url", "x", *command[1:]])
        assert (args.config, args.database_url) == (Path("mine.toml"), "x")


def test_db_and_silence_commands_work_with_dash_c_after_the_subcommand(tmp_path: Path, capsys: Any) -> None:
    from monitor.cli import main

    database = tmp_path / "m.db"
    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS.format(url=f"sqlite:///{database}"))
    assert main(["db", "upgrade", "-c", str(path)]) == 0
    assert database.exists()
    assert main(["db", "current", "-c", str(path)]) == 0
    assert f"database sqlite:///{database}: revision" in capsys.readouterr().out
    add = ["silence", "add", "--account", "alpha", "--for", "1h", "--reason", "margin added", "-c", str(path)]
    assert main(add) == 0
    assert main(["silence", "list", "-c", str(path)]) == 0
    assert "margin added" in capsys.readouterr().out
    assert main(["silence", "remove", "1", "-c", str(path)]) == 0


def test_an_unsupported_database_url_is_one_line_naming_the_scheme_and_what_is_supported(
    tmp_path: Path, capsys: Any
) -> None:
    from monitor.cli import main

    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS.format(url="mysql://monitor:hunter2@db.example/monitor"))
    commands = [["once"], ["run"], ["db", "current"], ["silence", "list"]]
    for command in [
        *([*c, "-c", str(path)] for c in commands),
        ["db", "--database-url", "mysql://u:hunter2@h/d", "upgrade"],
    ]:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: database_url: mysql:// is not supported"), err
        assert "sqlite:///" in err and "postgresql://" in err and "hunter2" not in err


def test_a_silence_for_an_account_that_does_not_exist_is_refused_unless_forced(tmp_path: Path, capsys: Any) -> None:
    from monitor.cli import main

    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS.format(url=f"sqlite:///{tmp_path}/m.db"))
    assert main(["db", "upgrade", "-c", str(path)]) == 0
    add = ["silence", "-c", str(path), "add", "--for", "1h", "--reason", "r", "--account"]
    assert main([*add, "alpah"]) == 1
    err = capsys.readouterr().err
    assert "--account 'alpah' matches no account in" in err and "(accounts: alpha, beta-main)" in err
    assert "--force" in err
    assert main(["silence", "-c", str(path), "list"]) == 0
    assert "alpah" not in capsys.readouterr().out  # nothing was added
    assert main([*add, "alpah", "--force"]) == 0
    assert main([*add, "beta-*"]) == 0  # globs that match, and portfolio alerts, are fine
    assert main([*add, "portfolio"]) == 0
    assert main(["silence", "-c", str(path), "list"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[-3:]] == ["alpah", "beta-*", "portfolio"]


def test_a_silence_for_a_rule_that_does_not_exist_or_without_a_reason_is_refused(tmp_path: Path, capsys: Any) -> None:
    from monitor.cli import main

    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS.format(url=f"sqlite:///{tmp_path}/m.db"))  # no [[rules]]: the default rules apply
    assert main(["db", "upgrade", "-c", str(path)]) == 0
    add = ["silence", "-c", str(path), "add", "--account", "alpha", "--for", "1h"]
    assert main([*add, "--reason", "r", "--rule", "liqudation"]) == 1
    err = capsys.readouterr().err
    assert "--rule 'liqudation' matches no rule in" in err and "(rules: liquidation, margin_ratio, unreachable)" in err
    assert "--force" in err
    for blank in ("", "   "):
        assert main([*add, "--reason", blank]) == 2
        assert "--reason must say why" in capsys.readouterr().err
    assert main(["silence", "-c", str(path), "list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # the header: nothing was added
    assert main([*add, "--reason", "r", "--rule", "liqudation", "--force"]) == 0
    assert main([*add, "--reason", "r", "--rule", "margin_*"]) == 0
    assert main(["silence", "-c", str(path), "add", "--account", "alpha", "--for", "90", "--reason", "r"]) == 0
    assert "silence 3 added until" in capsys.readouterr().out  # a bare number is seconds, as the message says
    path.write_text(path.read_text() + '\n[[rules]]\nname = "deep-drop"\n')  # only the names are read
    assert main([*add, "--reason", "r", "--rule", "liquidation"]) == 1
    assert "(rules: deep-drop)" in capsys.readouterr().err
    assert main([*add, "--reason", "r", "--rule", "deep-*"]) == 0
    assert main(["silence", "-c", str(path), "list", "--all"]) == 0
    rules = [line.split()[2] for line in capsys.readouterr().out.splitlines()[-4:]]
    assert rules == ["liqudation", "margin_*", "*", "deep-*"]


async def test_report_prints_the_stored_reads_of_the_simulators_accounts_as_text_and_json(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    import json
    import re
    from decimal import Decimal

    from monitor.numbers import money

    sim: Sim = await make_sim(accounts=3, limits=False)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    text = path.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{tmp_path}/m.db"\n', 1)
    path.write_text(text + '[[reports]]\nname = "desk"\nschedule = "daily 08:00"\naccounts = ["sim-001"]\n')
    code, out, err = await _run("once", "-c", str(path), "--json")
    assert code in (0, 1), err  # 1: an account the simulator generated unreadable on purpose; it is shown as such
    read = {a["name"]: a for a in json.loads(out)["accounts"]}
    code, out, err = await _run("report", "-c", str(path), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {a["name"] for a in report["accounts"]} == set(read)
    for account in report["accounts"]:
        if read[account["name"]]["ok"]:
            assert Decimal(account["equity_usdt"]) == Decimal(read[account["name"]]["equity_usdt"])
    # Where reports are made, the accounts' secrets need not be: variables unset, key files gone, a channel's
    # token unset too (check, which reads the accounts, still needs them)
    for key_file in tmp_path.rglob("*.pem"):
        key_file.unlink()
    unset = re.sub(r'^(api_key|api_secret|passphrase) = ".*"$', r'\1 = "${BM_UNSET_\1}"', text, flags=re.M)
    unset = unset.replace("[[accounts]]", '[channels]\nops = ["tgram://${BM_UNSET_TOKEN}/1"]\n[[accounts]]', 1)
    bare = tmp_path / "bare.toml"
    bare.write_text(unset + '[[reports]]\nname = "desk"\nschedule = "daily 08:00"\naccounts = ["sim-001"]\n')
    code, _, err = await _run("check", "-c", str(bare))
    assert code == 2 and "environment variable BM_UNSET_" in err
    code, out, err = await _run("report", "-c", str(bare), "--since", "2h")
    assert code == 0, err
    assert out.startswith(f"Report: {len(read)} accounts") and "\nsim-001\n  Equity:" in out
    if read["sim-001"]["ok"]:
        assert f"  Equity:                 {money(Decimal(read['sim-001']['equity_usdt']))} USDT" in out
    code, out, err = await _run("report", "-c", str(path), "desk", "--json")
    assert code == 0, err
    assert [a["name"] for a in json.loads(out)["accounts"]] == ["sim-001"]
    code, out, err = await _run("report", "-c", str(path), "nightly")
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == f"error: no report named 'nightly' (reports: desk) in {path}"
    code, _, err = await _run("report", "-c", str(path), "--since", "yesterday")
    assert code == 2 and err.splitlines()[-1].startswith("error: --since: ")


async def test_a_database_in_a_folder_that_does_not_exist_is_refused_by_run_and_named_by_check(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    """Nothing could be stored there, not even the alert state: run refuses to start rather than showing a green
    page and sending nothing."""
    sim: Sim = await make_sim(accounts=2)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    missing = tmp_path / "no-such-folder"
    text = path.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{missing}/monitor.db"\n')
    path.write_text(text)
    code, _, err = await _run("run", "-c", str(path), "--port", "0")
    assert code == 2
    assert f"database_url: the folder {missing} does not exist" in err
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 1 and f"FAILED: the folder {missing} does not exist" in out
    path.write_text(text.replace(str(missing), str(tmp_path)))
    code, out, _ = await _run("check", "-c", str(path))
    assert code == 0 and "not created yet (`run` creates it)" in out and not (tmp_path / "monitor.db").exists()
