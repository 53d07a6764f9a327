"""Secrets never reach an output: every path a test can push them through is grepped for their values."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import os
import pickle
import sys
import traceback
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError, ExchangeError
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


def _secret_file_config(tmp_path: Path, secret_file: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(
        f'[[accounts]]\nname = "alpha"\napi_key = "k"\npassphrase = "p"\napi_secret_file = "{secret_file}"\n'
    )
    return path


def test_a_fifo_as_secret_file_is_a_config_error_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    path = _secret_file_config(tmp_path, "secret.fifo")
    try:
        # Reading a FIFO waits for a writer that never comes: the error must come first (the per-test timeout
        # ends a hang). The opening below releases a reader that was blocked anyway, so a failure ends cleanly.
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={})
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert str(caught.value) == (
        f"{path}:5: accounts[0].api_secret_file: account 'alpha': {fifo.resolve()} is a FIFO (named pipe), not a "
        "regular file (point api_secret_file at a file that holds the secret or the PEM key)"
    )


def test_a_device_as_secret_file_is_a_config_error(tmp_path: Path) -> None:
    path = _secret_file_config(tmp_path, "/dev/zero")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.api_secret_file: account 'alpha': /dev/zero is a character "
                       r"device, not a regular file"):  # fmt: skip
        load_config(path, env={})


def test_a_secret_file_larger_than_any_key_is_a_config_error(tmp_path: Path) -> None:
    from monitor.config.accounts import SECRET_FILE_LIMIT

    (tmp_path / "big.pem").write_text("a" * SECRET_FILE_LIMIT)
    path = _secret_file_config(tmp_path, "big.pem")
    assert load_config(path, env={}).accounts[0].api_secret.reveal() == "a" * SECRET_FILE_LIMIT  # at the limit: read
    (tmp_path / "big.pem").write_text("a" * (SECRET_FILE_LIMIT + 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}:5: accounts[0].api_secret_file: account 'alpha': {(tmp_path / 'big.pem').resolve()} is larger than "
        "any key can be (over 64 KiB) (point api_secret_file at the file that holds the secret or the PEM key)"
    )
