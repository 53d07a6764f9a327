"""Margin to safety in alert messages, end to end: the monitor reads a position inside the warning level from the
simulator, its chat and email messages say what gets it back to the warning level plus `clear`, and doing what
the message says in the simulator puts the position there (and resolves the alert)."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path

import aiohttp

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from monitor.simulator.world import load_scenario
from tests.conftest import Mailbox, SimFactory, Sink, until
from tests.test_safety import add_margin

SCENARIO = """
[market]
volatility = 0

[[symbols]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
mark = "100"
tick_size = "0.01"
maintenance_rate = "0.01"

[[accounts]]
name = "iso"
api_key = "bg_iso"
api_secret = "iso-secret"
passphrase = "pw"
ips = []
wallets = [{ product_type = "USDT-FUTURES", coin = "USDT", balance = "1000" }]

[[accounts.positions]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
side = "long"
margin_mode = "isolated"
size = "10"
entry = "100"
margin = "100"
"""


async def test_a_warning_and_the_account_page_say_how_much_margin_gets_the_position_back_and_adding_it_does(
    make_sim: SimFactory, sink: Sink, smtp: Mailbox, tmp_path: Path
) -> None:
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    sim = await make_sim(world=load_scenario(tmp_path / "scenario.toml"), limits=False)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    monitor = f'database_url = "sqlite:///{tmp_path}/m.db"\npoll_interval = "1s"\nrisk_poll_interval = "200ms"\n'
    alerting = (
        f'[web]\nlisten = "127.0.0.1:0"\n[channels]\nchat = ["{sink.url()}"]\nmail = ["{smtp.url()}"]\n'
        '[[rules]]\nname = "liq"\ntype = "liquidation_distance"\nwarning = "5%"\ncritical = "3%"\nclear = "1%"\n'
    )
    text = path.read_text().replace("[monitor]\n", "[monitor]\n" + monitor, 1)
    path.write_text(text.replace("[[accounts]]", alerting + "[[accounts]]", 1))
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "95.5"})  # 4.81 % from liquidation
    service = Service(path, load_config(path, env={}), SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: len(sink.received) >= 1 and len(smtp.messages) >= 1)
        (chat,) = sink.received
        assert chat["title"].startswith("[WARNING] iso: BTCUSDT long: 4.81% from liquidation")
        found = re.search(r"; add about ([\d,.]+) USDT margin to get back to 6 %; since ", chat["message"])
        assert found, chat["message"]
        amount = Decimal(found.group(1).replace(",", ""))
        (mail,) = smtp.messages
        (body,) = [p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/plain"]
        assert f"  To safety:   add about {found.group(1)} USDT margin to get back to 6 %" in body

        async with aiohttp.ClientSession() as session, session.get(f"{service.web_url}/accounts/iso") as page:
            html = await page.text()
        said = f"add about {found.group(1)} USDT margin to get back to 6\u00a0%"  # the percent kept with its number
        assert f'<div class="muted safety">{said}</div>' in html

        account = sim.world.accounts["iso"]
        add_margin(account, account.positions[0], amount)  # what the trader does
        await until(lambda: any(r["title"].startswith("[RESOLVED]") for r in sink.received))
        state = await sim.control("GET", "/_sim/state")
        (position,) = next(a for a in state["accounts"] if a["name"] == "iso")["positions"]
        mark, liquidation = Decimal(position["mark"]), Decimal(position["liquidation_price"])
        reached = (mark - liquidation) / mark * 100
        assert Decimal(6) <= reached < Decimal("6.1")  # the target, give or take the suggestion's rounding up
        resolved = [r for r in sink.received if r["title"].startswith("[RESOLVED]")]
        assert "add about" not in resolved[0]["message"]  # nothing to suggest once it is safe
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
