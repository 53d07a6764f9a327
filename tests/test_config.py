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
from monitor.config.reader import locate
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
    assert [r.name for r in config.rules] == ["liquidation", "margin", "fund-a-drawdown", "odds", "unreachable", "key"]
    assert config.rules[3].horizon == timedelta(hours=24)
    assert config.warnings == ()


def test_without_credentials_the_example_loads_with_no_key_read_and_the_rest_still_checked(tmp_path: Path) -> None:
    example = tmp_path / "accounts.toml"
    example.write_text((ROOT / "accounts.example.toml").read_text())  # no keys/beta.pem, no variable set
    config = load_config(example, env={}, credentials=False)
    assert [(a.name, a.tags) for a in config.accounts] == [("alpha", ("fund-a",)), ("beta-rsa", ("fund-a", "rsa"))]
    secrets = [s for a in config.accounts for s in (a.api_key, a.api_secret, a.passphrase)]
    assert not any(secrets) and config.channels["ops"].urls == () and config.web.token is None
    assert config.channels["oncall"].timezone.key == "Europe/Berlin" and [r.name for r in config.reports]
    example.write_text(example.read_text().replace("[monitor]\n", "[monitor]\npoll_intervall = 5\n", 1))
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(example, env={}, credentials=False)


def test_database_url_comes_from_the_environment_when_set(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(f"[[accounts]]\n{ACCOUNT}")
    config = load_config(path, env={"MONITOR_DATABASE_URL": "postgresql://u:pw@db/x"})
    assert config.monitor.database_url.reveal() == "postgresql://u:pw@db/x"
    assert config.monitor.database_display == "postgresql://u:***@db/x"
    assert load_config(path, env={}).monitor.database_url.reveal() == "sqlite:///monitor.db"


def test_a_demo_account_is_tagged_demo_once(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    b, c = ACCOUNT.replace('name = "a"', 'name = "b"'), ACCOUNT.replace('name = "a"', 'name = "c"')
    path.write_text(f'[[accounts]]\n{ACCOUNT}demo = true\ntags = ["desk"]\n'
                    f'[[accounts]]\n{b}demo = true\ntags = ["demo"]\n[[accounts]]\n{c}')  # fmt: skip
    assert [a.tags for a in load_config(path, env={}).accounts] == [("desk", "demo"), ("demo",), ()]


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
        "market interval not positive",
        "[market]\nmark_interval = 0\n[[accounts]]\n" + ACCOUNT,
        "{f}:2: market.mark_interval: a duration must be positive, got 0",
    ),
    (
        "market key misspelt",
        "[market]\nconfirm_timout = 2\n[[accounts]]\n" + ACCOUNT,
        "{f}:2: market.confirm_timout: unknown key (did you mean 'confirm_timeout'?)",
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


def test_the_market_section_defaults_to_a_one_second_feed_and_a_two_second_confirmation(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[market]\nspot_interval = "30s"\n[[accounts]]\n' + ACCOUNT)
    market = load_config(path, env={}).market
    assert (market.mark_interval, market.spot_interval, market.confirm_timeout) == (
        timedelta(seconds=1),
        timedelta(seconds=30),
        timedelta(seconds=2),
    )


@pytest.mark.parametrize("value", ["90", '"90"', '"90s"', '"1.5m"'])
def test_a_duration_without_a_unit_is_seconds_as_a_number_or_as_text(tmp_path: Path, value: str) -> None:
    # the command line gives every value as text: `silence add --for 90` is the same 90 seconds
    path = tmp_path / "accounts.toml"
    path.write_text(f"[monitor]\npoll_interval = {value}\n[[accounts]]\n" + ACCOUNT)
    assert load_config(path, env={}).monitor.poll_interval == timedelta(seconds=90)


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


UNIT_MISTAKES = [
    (
        "liquidation levels as fractions",
        'type = "liquidation_distance"\nwarning = 0.15\ncritical = 0.07\n',
        "{f}:4: rules[0].warning: 0.15 is ambiguous: warning is in percent, so this reads as 0.15 %; as a fraction "
        'it would mean 15 % (write "15%" for 15 %, or "0.15%" if you mean 0.15 %)',
    ),
    (
        "one fraction beside a percentage",
        'type = "liquidation_distance"\nwarning = "15%"\ncritical = 0.07\n',
        "{f}:5: rules[0].critical: 0.07 is ambiguous: critical is in percent, so this reads as 0.07 %; as a fraction "
        'it would mean 7 % (write "7%" for 7 %, or "0.07%" if you mean 0.07 %)',
    ),
    (
        "a drawdown as a quoted fraction",
        'type = "drawdown"\nwarning = "0.5"\n',
        "{f}:4: rules[0].warning: '0.5' is ambiguous: warning is in percent, so this reads as 0.5 %; as a fraction "
        'it would mean 50 % (write "50%" for 50 %, or "0.5%" if you mean 0.5 %)',
    ),
    (
        "a liquidation clear as a fraction",
        'type = "liquidation_distance"\nwarning = "15%"\nclear = 0.02\n',
        "{f}:5: rules[0].clear: 0.02 is ambiguous: clear is in percent, so this reads as 0.02 %; as a fraction it "
        'would mean 2 % (write "2%" for 2 %, or "0.02%" if you mean 0.02 %)',
    ),
    (
        "a margin ratio written as a tiny percentage",
        'type = "margin_ratio"\nwarning = "0.6%"\n',
        "{f}:4: rules[0].warning: '0.6%' is a margin ratio of 0.006 (Bitget liquidates at 1, that is 100%) "
        '(write 0.6 or "60%" for a ratio of 0.6)',
    ),
]


@pytest.mark.parametrize(("rule", "expected"), [u[1:] for u in UNIT_MISTAKES], ids=[u[0] for u in UNIT_MISTAKES])
def test_a_fraction_where_percent_is_read_is_a_unit_mistake(tmp_path: Path, rule: str, expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[[rules]]\nname = "liquidation"\n' + rule + "[[accounts]]\n" + ACCOUNT)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == expected.format(f=path)


@pytest.mark.parametrize(
    ("rule", "levels"),
    [
        ('type = "liquidation_distance"\nwarning = "0.15%"\ncritical = 0\n', ("0.15", "0")),
        ('type = "liquidation_distance"\nwarning = 15\ncritical = "7"\nclear = 2\n', ("15", "7")),
        ('type = "drawdown"\nwarning = 1\ncritical = "12.5%"\n', ("1", "12.5")),
        ('type = "margin_ratio"\nwarning = 0.6\ncritical = "80%"\n', ("0.6", "0.8")),
        ('type = "unrealized_pnl"\nwarning = -0.5\ncritical = "-0.5%"\n', None),  # an amount and a percentage
        ('type = "account_pnl"\nwarning = -0.5\n', ("-0.5", None)),  # a loss of half a USDT: odd, not ambiguous
    ],
)
def test_levels_that_say_their_unit_are_taken_as_written(
    tmp_path: Path, rule: str, levels: tuple[str, str | None] | None
) -> None:
    from decimal import Decimal

    path = tmp_path / "accounts.toml"
    path.write_text('[[rules]]\nname = "r"\n' + rule + "[[accounts]]\n" + ACCOUNT)
    if levels is None:
        with pytest.raises(ConfigError, match="warning and critical must both be amounts or both be percentages"):
            load_config(path, env={})
        return
    (loaded,) = load_config(path, env={}).rules
    assert (loaded.warning, loaded.critical) == tuple(Decimal(v) if v is not None else None for v in levels)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            '[[accounts]]\nname = "alpha"\napi_key = "k"\napi_secret = "${ALPHA_SECRET}"\npassphrase = "p"\n',
            {"ALPHA_SECRET": ""},
            '{f}:4: accounts[0].api_secret: environment variable ALPHA_SECRET is set but empty for account "alpha" '
            "(export ALPHA_SECRET with its value, or put the value in a file)",
        ),
        (
            '[[accounts]]\nname = "alpha"\napi_key = "${KEY}"\napi_secret = "s"\npassphrase = "p"\n',
            {"KEY": "  "},
            '{f}:3: accounts[0].api_key: environment variable KEY is set but empty for account "alpha" '
            "(export KEY with its value, or put the value in a file)",
        ),
        (
            '[channels]\nops = ["tgram://${BOT}/${CHAT}"]\n[[accounts]]\n' + ACCOUNT,
            {"BOT": "", "CHAT": ""},
            "{f}:2: channels.ops: environment variables BOT, CHAT are set but empty (export BOT with its value, or "
            "put the value in a file)",
        ),
        (
            '[channels]\nops = ["${URL}"]\n[[accounts]]\n' + ACCOUNT,
            {"URL": ""},
            "{f}:2: channels.ops: environment variable URL is set but empty (export URL with its value, or put the "
            "value in a file)",
        ),
        (
            '[[accounts]]\nname = "alpha"\napi_key = "k"\napi_secret = ""\npassphrase = "p"\n',
            {},
            "{f}:4: accounts[0].api_secret: must not be empty",
        ),
    ],
    ids=["secret", "blank key", "channel url parts", "whole channel url", "literal empty"],
)
def test_an_empty_variable_is_named_as_empty(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert str(caught.value) == expected.format(f=path)
    assert "quote it" not in str(caught.value)


@pytest.mark.parametrize(
    ("channels", "line"),
    [
        ('[channels]\nops = ["notaservice://token-1"]\n', 2),
        ('[channels]\nops = { urls = ["notaservice://token-1"] }\n', 2),
        ('\nchannels.ops = ["notaservice://token-1"]\n', 2),
        ('[channels.ops]\nmin_severity = "warning"\nurls = ["notaservice://token-1"]\n', 3),
        ('[channels."on call"]\nurls = ["notaservice://token-1"]\n', 2),
    ],
    ids=["list", "inline table", "dotted key", "table", "quoted name"],
)
def test_a_bad_channel_url_is_reported_at_its_line(tmp_path: Path, channels: str, line: int) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(channels + "[[accounts]]\n" + ACCOUNT)
    with pytest.raises(ConfigError, match="is not a valid apprise URL") as caught:
        load_config(path, env={})
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: channels.")
    assert "token-1" not in str(caught.value)


def test_env_example_names_every_variable_of_the_example_accounts_file() -> None:
    # Settings, also commented-out ones (`# token = "${MONITOR_WEB_TOKEN}"`); not the prose that explains ${VAR}.
    settings = re.findall(r"^#?\s*[\w.\-\"]+\s*=(.*)$", (ROOT / "accounts.example.toml").read_text(), re.MULTILINE)
    used = {var for value in settings for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)}
    named = set(re.findall(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert used, "the example uses no variables: this test reads the wrong file"
    assert used <= named, f"missing from .env.example: {sorted(used - named)}"


def test_the_readme_refers_to_no_file_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../" not in readme
    paths = re.findall(r"`((?:[\w.\-]+/)+[\w.\-]+\.(?:md|py|toml|yml|yaml|j2|sh|txt))`", readme)
    assert "monitor/runtime.py" in paths, "the pattern finds no path: this test reads the wrong thing"
    # ./accounts.toml and ./.env are the user's own files, in the folder they run from.
    assert [p for p in paths if not p.startswith("./") and not (ROOT / p).exists()] == []


REPORT_ACCOUNT = (
    "[[accounts]]\n" + ACCOUNT + '[channels]\nops = ["json://127.0.0.1/hook"]\nmail = ["json://127.0.0.1/m"]\n'
)


def test_reports_load_with_their_defaults_and_every_channel(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(REPORT_ACCOUNT + '[[reports]]\nname = "daily"\nschedule = "daily 08:00"\n'
                    '[[reports]]\nname = "weekly"\nschedule = "weekly fri 17:30"\ntimezone = "Europe/Berlin"\n'
                    'accounts = ["fund-*"]\ntags = ["a"]\nchannels = ["mail"]\n')  # fmt: skip
    daily, weekly = load_config(path, env={}).reports
    assert (daily.name, str(daily.schedule), daily.timezone.key) == ("daily", "daily 08:00", "UTC")
    assert (daily.accounts, daily.tags, daily.channels) == (("*",), (), ("ops", "mail"))
    assert (weekly.schedule.kind, weekly.schedule.weekday, weekly.schedule.at.isoformat()) == ("weekly", 4, "17:30:00")
    assert (weekly.timezone.key, weekly.accounts, weekly.tags, weekly.channels) == (
        "Europe/Berlin", ("fund-*",), ("a",), ("mail",)
    )  # fmt: skip


def test_a_report_without_any_channel_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text("[[accounts]]\n" + ACCOUNT + '[[reports]]\nname = "daily"\nschedule = "hourly"\n')
    config = load_config(path, env={})
    assert config.reports[0].channels == ()
    assert "report 'daily' has no channel to go to" in " ".join(config.warnings)


BROKEN_REPORTS = [
    (
        "unknown report key",
        '[[reports]]\nname = "d"\nschedule = "hourly"\nchanels = ["ops"]\n',
        "{f}:12: reports[0].chanels: unknown key (did you mean 'channels'?)",
    ),
    (
        "bad schedule",
        '[[reports]]\nname = "d"\nschedule = "daily at 8"\n',
        '{f}:11: reports[0].schedule: expected "hourly", "daily 08:00" or "weekly mon 08:00", got \'daily at 8\'',
    ),
    (
        "bad day",
        '[[reports]]\nname = "d"\nschedule = "weekly mnd 08:00"\n',
        "{f}:11: reports[0].schedule: unknown day 'mnd' in 'weekly mnd 08:00'; use mon, tue, wed, thu, fri, sat or sun",
    ),
    (
        "bad time zone",
        '[[reports]]\nname = "d"\nschedule = "hourly"\ntimezone = "Berlin"\n',
        '{f}:12: reports[0].timezone: unknown time zone \'Berlin\'; use an IANA name like "Europe/Berlin" or "UTC"',
    ),
    (
        "missing schedule",
        '[[reports]]\nname = "d"\n',
        '{f}:9: reports[0]: missing required key \'schedule\' (when it is sent: "hourly", "daily 08:00" or '
        '"weekly mon 08:00" (in its timezone))',
    ),
    (
        "unknown channel",
        '[[reports]]\nname = "d"\nschedule = "hourly"\nchannels = ["pager"]\n',
        "{f}:12: reports[0].channels: unknown channel 'pager' (channels: ops, mail; add it under [channels])",
    ),
    (
        "duplicate report",
        '[[reports]]\nname = "d"\nschedule = "hourly"\n[[reports]]\nname = "d"\nschedule = "hourly"\n',
        "{f}:13: reports[1].name: duplicate report name 'd' (reports[0] already uses it; names must be unique)",
    ),
    (
        "not a table array",
        'reports = "daily"\n',
        "{f}:1: reports: expected [[reports]] tables (see accounts.example.toml)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BROKEN_REPORTS], ids=[b[0] for b in BROKEN_REPORTS])
def test_each_broken_report_gives_its_one_exact_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text + REPORT_ACCOUNT if text.startswith("reports =") else REPORT_ACCOUNT + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == expected.format(f=path)
