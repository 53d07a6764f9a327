"""Margin to safety in alert messages, end to end: the monitor reads a position inside the warning level from the
simulator, its chat and email messages say what gets it back to the warning level plus `clear`, and doing what
the message says in the simulator puts the position there (and resolves the alert)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import aiohttp

from tests.conftest import Mailbox, SimFactory, Sink, until
from tests.launch import accounts_file, running
from tests.scenarios import LIQUIDATION_RULE, ONE_POSITION
from tests.test_safety import add_margin


async def test_a_warning_and_the_account_page_say_how_much_margin_gets_the_position_back_and_adding_it_does(
    make_sim: SimFactory, sink: Sink, smtp: Mailbox, tmp_path: Path
) -> None:
    sim = await make_sim(scenario=ONE_POSITION, limits=False)
    channels = f'[channels]\nchat = ["{sink.url()}"]\nmail = ["{smtp.url()}"]\n'
    path = accounts_file(
        sim, tmp_path, 'poll_interval = "1s"\nrisk_poll_interval = "200ms"\n', channels + LIQUIDATION_RULE
    )
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "95.5"})  # 4.81 % from liquidation
    async with running(path) as service:
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
