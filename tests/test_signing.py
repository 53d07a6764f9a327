"""Signatures against Bitget's published vectors, ccxt's independent signer and the `cryptography` reference."""

from __future__ import annotations

import base64
import random
from typing import Any

import ccxt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from monitor.exchange.bitget.signing import HmacSigner, RsaSigner, encode_query, prehash, signer_for
from monitor.secret import Secret

# shared/bitget-api.md, "Test vectors"
KEY = "bg_0123456789abcdef0123456789abcdef"
PASSPHRASE = "TestPassphrase1"
TIMESTAMP = "1700000000000"
SECRET = "0a1b2c3d4e5f67890a1b2c3d4e5f67890a1b2c3d4e5f67890a1b2c3d4e5f6789"
LEVERAGE_BODY = (
    '{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","leverage":"10"}'
)


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "expected"),
    [
        (
            "GET",
            "/api/v2/mix/position/all-position",
            {"productType": "USDT-FUTURES", "marginCoin": "USDT"},
            "",
            "MXlCoWxbaq4BX1S3CiLiv0DuSY99stBriWykZFacPp4=",
        ),
        ("GET", "/api/v2/spot/account/assets", {}, "", "W/pWOPo/+LY1fmrb1XbfrmzY9f7XCE4RGgNFqszQRyw="),
        ("POST", "/api/v2/mix/account/set-leverage", {}, LEVERAGE_BODY, "fwcnCDQQ4EKAHe2Eg1Kz7K99wqpeM9ro1yqOtKfqBGg="),
    ],
)
def test_hmac_signatures_match_the_published_vectors(
    method: str, path: str, params: dict[str, str], body: str, expected: str
) -> None:
    signed_query, _ = encode_query(params)
    assert HmacSigner(Secret(SECRET)).sign(prehash(TIMESTAMP, method, path, signed_query, body)) == expected


def test_the_query_is_sorted_and_signed_decoded_but_sent_encoded() -> None:
    signed, sent = encode_query({"symbol": "BTC USDT", "coin": "a&b=c", "productType": "USDT-FUTURES"})
    assert signed == "coin=a&b=c&productType=USDT-FUTURES&symbol=BTC USDT"
    assert sent == "coin=a%26b%3Dc&productType=USDT-FUTURES&symbol=BTC%20USDT"


def test_the_prehash_has_no_question_mark_without_a_query() -> None:
    assert prehash("1", "get", "/api/v2/x") == "1GET/api/v2/x"
    assert prehash("1", "GET", "/api/v2/x", "a=b") == "1GET/api/v2/x?a=b"


def _rsa_pem(pkcs1: bool) -> tuple[str, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
    return pem, key.public_key()


@pytest.mark.parametrize("pkcs1", [False, True], ids=["pkcs8", "pkcs1"])
def test_an_rsa_signature_verifies_with_the_public_key(pkcs1: bool) -> None:
    pem, public = _rsa_pem(pkcs1)
    assert ("BEGIN RSA PRIVATE KEY" in pem) == pkcs1
    signer = signer_for(Secret(pem))
    assert isinstance(signer, RsaSigner)
    message = prehash(TIMESTAMP, "GET", "/api/v2/spot/account/assets")
    signature = base64.b64decode(signer.sign(message))
    public.verify(signature, message.encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong


def test_a_plain_secret_means_hmac() -> None:
    assert signer_for(Secret(SECRET)).kind == "hmac"


def test_an_encrypted_pem_is_refused_with_a_fix() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    with pytest.raises(ValueError, match="encrypted; export it without a password"):
        signer_for(Secret(pem))


def test_a_non_rsa_pem_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ValueError, match="Bitget needs an RSA key"):
        signer_for(Secret(pem))


def test_a_public_key_in_place_of_the_private_one_is_refused_with_a_fix() -> None:
    """Bitget is given the public key, so it is the file at hand: used as an HMAC secret, every request would
    fail with 40009 and no word on why."""
    public = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match=r"PEM public key .* use the private key it was made with"):
        signer_for(Secret(public))


class FixedNonceBitget(ccxt.bitget):  # type: ignore[misc]
    """ccxt's own signer, with the timestamp pinned so its signature can be compared with ours."""

    def nonce(self) -> int:
        return int(TIMESTAMP)


CCXT_ENDPOINTS = [
    ("v2/mix/position/all-position", "mix", "/api/v2/mix/position/all-position"),
    ("v2/mix/account/accounts", "mix", "/api/v2/mix/account/accounts"),
    ("v2/spot/account/assets", "spot", "/api/v2/spot/account/assets"),
    ("v3/position/current-position", "uta", "/api/v3/position/current-position"),
]


def _random_params(rng: random.Random) -> dict[str, str]:
    pool: dict[str, list[str]] = {
        "productType": ["USDT-FUTURES", "COIN-FUTURES", "usdc-futures"],
        "marginCoin": ["USDT", "BTC", "USDC"],
        "symbol": ["BTCUSDT", "ETHUSD", "SOLUSDT"],
        "coin": ["USDT", "BTC"],
        "assetType": ["hold_only", "all"],
        "category": ["USDT-FUTURES"],
    }
    keys = rng.sample(sorted(pool), rng.randint(0, 3))
    return {k: rng.choice(pool[k]) for k in keys}


def test_ccxt_and_our_signer_agree_on_generated_requests() -> None:
    exchange = FixedNonceBitget({"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE})
    rng = random.Random(7)
    ours = HmacSigner(Secret(SECRET))
    for _ in range(200):
        path, api, full_path = rng.choice(CCXT_ENDPOINTS)
        params = _random_params(rng)
        request: dict[str, Any] = exchange.sign(path, ["private", api], "GET", dict(params))
        signed_query, sent_query = encode_query(params)
        assert request["headers"]["ACCESS-SIGN"] == ours.sign(prehash(TIMESTAMP, "GET", full_path, signed_query))
        assert request["url"].endswith(full_path + (f"?{sent_query}" if sent_query else ""))
