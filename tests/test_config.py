"""The accounts file: the example loads, each broken file gives its one exact error, every key is documented."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.config import load_config
from monitor.config.loader import locate
from monitor.config.schema import SETTINGS
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = {
    "TELEGRAM_BOT_TOKEN": "123:abc",
    "TELEGRAM_CHAT_ID": "42",
    "SMTP_USER": "mailer",
    "SMTP_PASSWORD": "smtp-pass",
    "ALPHA_API_KEY": "bg_alpha",
    "ALPHA_API_SECRET": "alpha-secret",
    "ALPHA_PASSPHRASE": "alpha-pass",
    "BETA_API_KEY": "bg_beta",
    "BETA_PASSPHRASE": "beta-pass",
}
ACCOUNT = 'name = "a"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n'


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def test_the_example_file_loads(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "beta.pem").write_text(_pem())
    (tmp_path / "keys" / "beta.pem").chmod(0o600)
    example = tmp_path / "accounts.toml"
    example.write_text((ROOT / "accounts.example.toml").read_text())
    config = load_config(example, env=EXAMPLE_ENV)
    assert [a.name for a in config.accounts] == ["alpha", "beta-rsa"]
    alpha, beta = config.accounts
    assert (alpha.key_type, beta.key_type) == ("hmac", "rsa")
    assert alpha.api_secret.reveal() == "alpha-secret"
    assert beta.products == ("USDT-FUTURES", "COIN-FUTURES")
    assert config.monitor.poll_interval == timedelta(seconds=30)
    assert config.channels["ops"].urls[0].reveal() == "tgram://123:abc/42"
    assert config.channels["oncall"].timezone.key == "Europe/Berlin"
    assert [r.name for r in config.rules] == ["liquidation", "margin", "fund-a-drawdown", "unreachable", "key"]
    assert config.warnings == ()


def test_database_url_comes_from_the_environment_when_set(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(f"[[accounts]]\n{ACCOUNT}")
    config = load_config(path, env={"MONITOR_DATABASE_URL": "postgresql://u:pw@db/x"})
    assert config.monitor.database_url.reveal() == "postgresql://u:pw@db/x"
    assert config.monitor.database_display == "postgresql://u:***@db/x"
    assert load_config(path, env={}).monitor.database_url.reveal() == "sqlite:///monitor.db"


BROKEN = [
    (
        "unknown key with a hint",
        '[monitor]\npoll_intervall = "30s"\n[[accounts]]\n' + ACCOUNT,
        "{f}:2: monitor.poll_intervall: unknown key (did you mean 'poll_interval'?)",
    ),
    (
        "unknown section",
        "[acounts]\nx = 1\n[[accounts]]\n" + ACCOUNT,
        "{f}:1: acounts: unknown key (did you mean 'accounts'?)",
    ),
    (
        "unknown account key",
        "[[accounts]]\n" + ACCOUNT + 'api_secrets = "x"\n',
        "{f}:6: accounts[0].api_secrets: unknown key (did you mean 'api_secret'?)",
    ),
    (
        "bad duration",
        '[monitor]\npoll_interval = "30 sec"\n[[accounts]]\n' + ACCOUNT,
        '{f}:2: monitor.poll_interval: expected a duration like "500ms", "30s", "5m", "2h" or a number of seconds, '
        "got '30 sec'",
    ),
    (
        "negative duration",
        "[monitor]\npoll_interval = -5\n[[accounts]]\n" + ACCOUNT,
        "{f}:2: monitor.poll_interval: a duration must be positive, got -5",
    ),
    (
        "missing environment variable",
        '[[accounts]]\nname = "alpha"\napi_key = "k"\napi_secret = "${NOT_SET_ANYWHERE}"\npassphrase = "p"\n',
        '{f}:4: accounts[0].api_secret: environment variable NOT_SET_ANYWHERE is not set for account "alpha" '
        "(export NOT_SET_ANYWHERE, or put the value in a file)",
    ),
    (
        "duplicate names",
        "[[accounts]]\n" + ACCOUNT + "[[accounts]]\n" + ACCOUNT,
        "{f}:7: accounts[1].name: duplicate account name 'a' (accounts[0] already uses it; names must be unique)",
    ),
    (
        "TOML syntax",
        '[[accounts]]\nname = "a\nx = 1\n',
        "{f}:2: not valid TOML: ...",  # the rest is tomllib's wording, which varies by Python version
    ),
    (
        "missing required key",
        '[[accounts]]\nname = "a"\napi_key = "k"\napi_secret = "s"\n',
        "{f}:1: accounts[0]: missing required key 'passphrase' (the passphrase chosen when creating the key)",
    ),
    (
        "both secret forms",
        "[[accounts]]\n" + ACCOUNT + 'api_secret_file = "x.pem"\n',
        "{f}:1: accounts[0]: account 'a' needs exactly one of api_secret and api_secret_file",
    ),
    (
        "v1 product type",
        "[[accounts]]\n" + ACCOUNT + 'products = ["umcbl"]\n',
        "{f}:6: accounts[0].products: 'umcbl' is a v1 product type, switched off by Bitget on 2025-11-28; use "
        '"USDT-FUTURES", "COIN-FUTURES" or "USDC-FUTURES"',
    ),
    (
        "unknown product",
        "[[accounts]]\n" + ACCOUNT + 'products = ["spot", "options"]\n',
        "{f}:6: accounts[0].products: unknown product 'options'; choose from spot, USDT-FUTURES, COIN-FUTURES, "
        "USDC-FUTURES",
    ),
    (
        "wrong type",
        "[[accounts]]\n" + ACCOUNT + 'demo = "yes"\n',
        "{f}:6: accounts[0].demo: expected true or false, got 'yes'",
    ),
    (
        "bad url",
        '[monitor]\nbitget_url = "api.bitget.com"\n[[accounts]]\n' + ACCOUNT,
        "{f}:2: monitor.bitget_url: expected an http(s) URL like \"https://api.bitget.com\", got 'api.bitget.com'",
    ),
    (
        "no accounts",
        '[monitor]\npoll_interval = "30s"\n',
        "{f}: no accounts configured (add an [[accounts]] table; see accounts.example.toml)",
    ),
    (
        "a bad channel",
        "[channels]\nops = 5\n[[accounts]]\n" + ACCOUNT,
        '{f}:2: channels.ops: expected a list of apprise URLs (e.g. ops = ["tgram://${{TELEGRAM_BOT_TOKEN}}/'
        '${{TELEGRAM_CHAT_ID}}"])',
    ),
    (
        "a bad PEM",
        '[[accounts]]\nname = "a"\napi_key = "k"\npassphrase = "p"\n'
        'api_secret = "-----BEGIN PRIVATE KEY-----\\nnonsense\\n-----END PRIVATE KEY-----"\n',
        "{f}:5: accounts[0].api_secret: the PEM private key cannot be read (expected PKCS#8 or PKCS#1 RSA)",
    ),
    (
        "missing secret file",
        '[[accounts]]\nname = "a"\napi_key = "k"\npassphrase = "p"\napi_secret_file = "nope.pem"\n',
        "{f}:5: accounts[0].api_secret_file: cannot read {d}/nope.pem: No such file or directory (check the path "
        "(relative to the accounts file) and its permissions)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_broken_file_gives_its_one_exact_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    expected = expected.format(f=path, d=tmp_path.resolve())
    if expected.endswith("..."):
        assert str(caught.value).startswith(expected.removesuffix("..."))
    else:
        assert str(caught.value) == expected


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found \(copy accounts\.example\.toml and fill it in\)"):
        load_config(tmp_path / "missing.toml")


def test_literal_secrets_and_readable_secret_files_are_warned_about(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(_pem())
    key_file.chmod(0o644)
    path = tmp_path / "accounts.toml"
    path.write_text(
        "[[accounts]]\n" + ACCOUNT + '[[accounts]]\nname = "b"\napi_key = "${K}"\npassphrase = "${P}"\n'
        'api_secret_file = "key.pem"\n'
    )
    path.chmod(0o600)
    config = load_config(path, env={"K": "k", "P": "p"})
    assert config.warnings == (
        f"account 'b': the secrets file {key_file} is readable by other users; chmod 600 {key_file}",
        f'{path} holds literal secrets for 1 account(s) (a); prefer "${{VAR}}" from the environment or api_secret_file',
    )
    path.chmod(0o644)
    assert f"the accounts file (with literal secrets) {path} is readable by other users" in " ".join(
        load_config(path, env={"K": "k", "P": "p"}).warnings
    )


def test_a_secret_file_is_trimmed_for_hmac_and_kept_for_pem(tmp_path: Path) -> None:
    (tmp_path / "hmac.txt").write_text("  abc123\n")
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nname = "a"\napi_key = "k"\npassphrase = "p"\napi_secret_file = "hmac.txt"\n')
    assert load_config(path, env={}).accounts[0].api_secret.reveal() == "abc123"


def test_product_names_are_case_insensitive_and_deduplicated(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text("[[accounts]]\n" + ACCOUNT + 'products = ["usdt-futures", "USDT-FUTURES", "Spot"]\n')
    assert load_config(path, env={}).accounts[0].products == ("USDT-FUTURES", "spot")


@pytest.mark.parametrize(
    ("path", "line"),
    [(("monitor", "poll_interval"), 3), (("accounts", 1, "name"), 8), (("accounts", 1), 7), (("nothing",), None)],
)
def test_keys_are_located_by_line(path: tuple[str | int, ...], line: int | None) -> None:
    source = '# c\n[monitor]\npoll_interval = "1s"\n[[accounts]]\nname = "a"\n\n[[accounts]]\nname = "b"\n'
    assert locate(source, path) == line


@pytest.mark.parametrize("setting", SETTINGS, ids=[f"{s.section}.{s.key}" for s in SETTINGS])
def test_every_accepted_key_is_documented(setting: object) -> None:
    from monitor.config.schema import Setting

    assert isinstance(setting, Setting)
    example = (ROOT / "accounts.example.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^#?\s*{setting.key}\s*=", example, re.MULTILINE), f"{setting.key} not in the example"
    assert f"`{setting.key}`" in readme, f"{setting.key} not in the README's config reference"


def test_the_environment_is_the_default_source_of_variables(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nname = "a"\napi_key = "${BM_TEST_KEY}"\napi_secret = "s"\npassphrase = "p"\n')
    os.environ["BM_TEST_KEY"] = "from-env"
    try:
        assert load_config(path).accounts[0].api_key.reveal() == "from-env"
    finally:
        del os.environ["BM_TEST_KEY"]


def test_a_secret_of_the_wrong_type_is_reported_without_its_value(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nname = "a"\napi_key = "k"\napi_secret = "s"\npassphrase = 98765432\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}:5: accounts[0].passphrase: expected a non-empty string (the value is a secret, not shown) "
        '(quote it: key = "...")'
    )
    assert "98765432" not in str(caught.value)


def test_variables_are_replaced_inside_lists_too(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text("[[accounts]]\n" + ACCOUNT + 'tags = ["${DESK}", "fixed"]\nproducts = ["${PRODUCT}"]\n')
    account = load_config(path, env={"DESK": "desk-7", "PRODUCT": "coin-futures"}).accounts[0]
    assert (account.tags, account.products) == (("desk-7", "fixed"), ("COIN-FUTURES",))


@pytest.mark.parametrize("value", ['"99999999999d"', "1e300"])
def test_an_absurd_duration_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(f"[monitor]\npoll_interval = {value}\n[[accounts]]\n" + ACCOUNT)
    with pytest.raises(ConfigError, match="a duration must be at most 3660 days"):
        load_config(path, env={})


def test_the_database_url_override_does_not_need_the_files_variables(tmp_path: Path) -> None:
    from monitor.config.loader import database_url

    path = tmp_path / "accounts.toml"
    path.write_text('[monitor]\ndatabase_url = "postgresql://u:${DB_PASSWORD}@db/x"\n[[accounts]]\n' + ACCOUNT)
    override = {"MONITOR_DATABASE_URL": "sqlite:///other.db"}
    assert load_config(path, env=override).monitor.database_url.reveal() == "sqlite:///other.db"
    assert database_url(path, env=override) == "sqlite:///other.db"
    assert database_url(path, env={"DB_PASSWORD": "pw"}) == "postgresql://u:pw@db/x"
    assert database_url(tmp_path / "absent.toml", env={}) == "sqlite:///monitor.db"
    with pytest.raises(ConfigError, match="environment variable DB_PASSWORD is not set"):
        database_url(path, env={})


def test_a_binary_secret_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "key.der").write_bytes(b"\x30\x82\x04\xa4\xff\xfe")
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\nname = "a"\napi_key = "k"\npassphrase = "p"\napi_secret_file = "key.der"\n')
    with pytest.raises(ConfigError, match=r"key.der is not text \(it must hold the secret or a PEM key"):
        load_config(path, env={})
