"""Secrets never reach an output: every path a test can push them through is grepped for their values."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import pickle
import sys
import traceback
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ExchangeError
from monitor.exchange.bitget.signing import signer_for
from monitor.secret import Secret
from monitor.simulator.generate import write_accounts_file
from tests.conftest import SimFactory

CHANNEL_PASSWORD = "chan-pw-8f3a9c"


def _needles(world_private_keys: dict[str, str], config_path: Path) -> list[str]:
    config = load_config(config_path)
    needles = [CHANNEL_PASSWORD]
    for account in config.accounts:
        needles += [account.api_key.reveal(), account.passphrase.reveal()]
        secret = account.api_secret.reveal()
        # For a PEM, any line of the key body is a leak.
        needles += (
            [line for line in secret.splitlines() if line and "-----" not in line][:3]
            if "-----" in secret
            else [secret]
        )
    return needles


def _assert_clean(text: str, needles: list[str], where: str) -> None:
    for needle in needles:
        assert needle not in text, f"a secret leaked through {where}"


async def test_secrets_never_appear_in_any_output(
    make_sim: SimFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await make_sim(accounts=6)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    with path.open("a") as f:
        f.write(f'\n[channels]\nops = ["json://user:{CHANNEL_PASSWORD}@127.0.0.1:9/hook"]\n')
    needles = _needles(sim.world.private_keys, path)
    config = load_config(path)
    outputs: dict[str, str] = {}

    # str, repr, format and dataclass views of everything the config holds
    outputs["str/repr"] = "\n".join(
        [str(config), repr(config), *(f"{a} {a!r} {a.api_secret:>10}" for a in config.accounts)]
    )
    outputs["asdict"] = json.dumps([dataclasses.asdict(a) for a in config.accounts], default=str)
    outputs["copies"] = repr([copy.deepcopy(a) for a in config.accounts]) + repr(dataclasses.replace(config))
    outputs["channels"] = repr(config.channels) + "{}".format(*config.channels["ops"].urls)
    outputs["signers"] = repr([signer_for(a.api_secret) for a in config.accounts])

    # logging, including of the objects themselves
    with caplog.at_level(logging.DEBUG):
        log = logging.getLogger("test.secrets")
        for a in config.accounts:
            log.info("account %s %r secret=%s passphrase=%s", a, a, a.api_secret, a.passphrase)

    # exchange errors from wrong credentials and a changed passphrase, with their tracebacks
    await sim.control("POST", "/_sim/accounts/sim-001", {"passphrase": "changed"})
    errors: list[str] = []
    for account in sim.world.accounts.values():
        for changes in ({}, {"secret": "0" * 64}, {"passphrase": "nope"}):
            client = sim.client(account, **changes)
            try:
                await client.key_info()
            except ExchangeError as exc:
                errors.append(str(exc) + repr(exc) + "".join(traceback.format_exception(exc)))
            errors.append(repr(client))
    outputs["errors"] = "\n".join(errors)

    # the CLI with debug logging, against accounts that work and one that does not
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "--log-level", "DEBUG", "check", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1  # sim-001's passphrase changed
    outputs["cli"] = out.decode() + err.decode()
    outputs["logs"] = caplog.text

    for where, text in outputs.items():
        _assert_clean(text, needles, where)
    assert "40012" in outputs["cli"]  # the failure was really reported


def test_a_secret_cannot_be_serialized_by_accident() -> None:
    secret = Secret("hunter2-abc")
    with pytest.raises(TypeError):
        json.dumps({"s": secret})
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert str(secret) == "***" and f"{secret}" == "***" and "hunter2" not in repr(secret)
    assert secret.reveal() == "hunter2-abc"


def test_a_missing_variable_error_names_the_variable_not_a_value(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nname = "a"\napi_key = "${KEY}"\napi_secret = "${SECRET}"\npassphrase = "p"\n')
    with pytest.raises(Exception, match="SECRET is not set") as caught:
        load_config(path, env={"KEY": "visible-only-to-signer"})
    assert "visible-only-to-signer" not in str(caught.value)
