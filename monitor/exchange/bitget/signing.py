"""Request signing exactly as Bitget verifies it (see shared/bitget-api.md).

Pure functions: the caller supplies the timestamp, so the same inputs always give the same signature.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from monitor.secret import Secret


def encode_query(params: Mapping[str, str]) -> tuple[str, str]:
    """Sort the parameters by key; return (the string to sign, the string to send).

    Bitget verifies the percent-decoded values and does not sort for itself, so the signed string holds the
    raw values and the sent string the same pairs, in the same order, percent-encoded.
    """
    items = sorted(params.items())
    signed = "&".join(f"{k}={v}" for k, v in items)
    sent = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)
    return signed, sent


def prehash(timestamp: str, method: str, path: str, query: str = "", body: str = "") -> str:
    """`timestamp + METHOD + requestPath [+ "?" + query] + body`; `path` starts at /api/."""
    return timestamp + method.upper() + path + (f"?{query}" if query else "") + body


class Signer(Protocol):
    kind: str

    def sign(self, message: str) -> str:
        """The base64 ACCESS-SIGN for a prehash string."""
        ...


class HmacSigner:
    kind = "hmac"

    def __init__(self, secret: Secret) -> None:
        self._key = secret.reveal().encode()

    def __repr__(self) -> str:
        return "HmacSigner(***)"

    def sign(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()


class RsaSigner:
    """Bitget's "self-generated" keys: RSASSA-PKCS1-v1_5 over SHA-256."""

    kind = "rsa"

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._key = private_key

    def __repr__(self) -> str:
        return "RsaSigner(***)"

    def sign(self, message: str) -> str:
        signature = self._key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()


def is_pem(secret: Secret) -> bool:
    text = secret.reveal()
    return "-----BEGIN" in text and "PRIVATE KEY-----" in text


@functools.lru_cache(maxsize=8192)
def signer_for(secret: Secret) -> HmacSigner | RsaSigner:
    """An RSA signer when the secret is a PEM private key (PKCS#8 or PKCS#1), else HMAC.

    Raises ValueError, without the key's content, when a PEM cannot be used. Cached: loading (and
    validating) an RSA key costs tens of milliseconds, and the loader and every client ask for it.
    """
    if not is_pem(secret):
        text = secret.reveal()
        if "-----BEGIN" in text and "PUBLIC KEY-----" in text:  # HMAC with a public key: every request a 40009
            raise ValueError("this is a PEM public key (the one given to Bitget); use the private key it was made "
                             "with")  # fmt: skip
        return HmacSigner(secret)
    try:
        key = serialization.load_pem_private_key(secret.reveal().strip().encode(), password=None)
    except TypeError:  # encrypted PEM
        raise ValueError("the PEM private key is encrypted; export it without a password") from None
    except ValueError:
        raise ValueError("the PEM private key cannot be read (expected PKCS#8 or PKCS#1 RSA)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the PEM key is {type(key).__name__}, Bitget needs an RSA key")
    return RsaSigner(key)
