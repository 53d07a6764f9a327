"""The simulator's checks of a signed request, in Bitget's order: key, signature presence, timestamp,
passphrase, signature (HMAC-SHA256 or RSA), IP binding, environment (demo or live), permission."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import unquote_plus

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from monitor.exchange.bitget.signing import prehash
from monitor.simulator.market import SimAccount
from monitor.simulator.world import World

TIMESTAMP_WINDOW_MS = 30_000


class Rejection(Exception):
    """A request Bitget refuses, with its error code (and the account, once the key named one)."""

    def __init__(self, code: str, account: SimAccount | None = None) -> None:
        self.code = code
        self.account = account


class Gate:
    def __init__(self, world: World) -> None:
        self.world = world
        self._public_keys: dict[str, rsa.RSAPublicKey] = {}  # by account: a PEM is parsed once

    def authenticate(self, request: web.Request, server_ms: int) -> SimAccount:
        """The account a signed request comes from, or Rejection with the code of the first check it fails."""
        headers = request.headers
        key = headers.get("ACCESS-KEY", "")
        if not key:
            raise Rejection("40006")
        account = self.world.by_key.get(key)
        if account is None or account.revoked:
            raise Rejection("40037")
        signature = headers.get("ACCESS-SIGN", "")
        if not signature:
            raise Rejection("40009", account)
        timestamp = headers.get("ACCESS-TIMESTAMP", "")
        if not timestamp.isdigit():
            raise Rejection("40005", account)
        if abs(int(timestamp) - server_ms) > TIMESTAMP_WINDOW_MS:
            raise Rejection("40008", account)
        if headers.get("ACCESS-PASSPHRASE", "") != account.passphrase:
            raise Rejection("40012", account)
        # Bitget verifies the percent-decoded query in the order it was sent; it does not sort.
        query = "&".join(unquote_plus(part) for part in request.query_string.split("&")) if request.query_string else ""
        message = prehash(timestamp, request.method, request.path, query)
        if not self.verify(account, message, signature):
            raise Rejection("40009", account)
        if account.ips and (request.remote or "") not in account.ips:
            raise Rejection("40018", account)
        if (headers.get("paptrading", "") == "1") != account.demo:
            raise Rejection("40099", account)
        if not account.permissions:
            raise Rejection("40014", account)
        return account

    def verify(self, account: SimAccount, message: str, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            return False
        if account.secret is not None:
            expected = hmac.new(account.secret.encode(), message.encode(), hashlib.sha256).digest()
            return hmac.compare_digest(expected, raw)
        key = self._public_keys.get(account.name)
        if key is None:
            loaded = serialization.load_pem_public_key((account.public_key_pem or "").encode())
            assert isinstance(loaded, rsa.RSAPublicKey)
            key = self._public_keys[account.name] = loaded
        try:
            key.verify(raw, message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True
