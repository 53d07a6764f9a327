"""The simulator scenarios the end-to-end tests share, as scenario files (`monitor.simulator.world.load_scenario`)."""

from __future__ import annotations

SYMBOL = """
[[symbols]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
mark = "100"
tick_size = "0.01"
maintenance_rate = "0.01"
"""

ISO = """
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

CROSS = """
[[accounts]]
name = "cross"
api_key = "bg_cross"
rsa_private_key_file = "cross.pem"
passphrase = "pw"
ips = []
wallets = [{ product_type = "USDT-FUTURES", coin = "USDT", balance = "200" }]

[[accounts.positions]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
side = "short"
margin_mode = "crossed"
size = "10"
entry = "100"
"""

# One isolated long, marks frozen: liquidation at 90.90909091, so mark 100 is 9.09 % away, 95.5 is 4.81 %, 95 is
# 4.31 %, 93 is 2.25 %.
ONE_POSITION = "[market]\nvolatility = 0\n" + SYMBOL + ISO
# The same long and a cross short on an RSA key (the key file, cross.pem, next to the scenario), marks walking.
TWO_ACCOUNTS = "[market]\nvolatility = 0.001\n" + SYMBOL + ISO + CROSS

# The rule the end-to-end tests judge these positions by: at 93 the long is critical, at 100 it resolves.
LIQUIDATION_RULE = (
    '[[rules]]\nname = "liq"\ntype = "liquidation_distance"\nwarning = "5%"\ncritical = "3%"\nclear = "1%"\n'
)
# The same two, both on HMAC keys.
TWO_HMAC_ACCOUNTS = TWO_ACCOUNTS.replace('rsa_private_key_file = "cross.pem"', 'api_secret = "cross-secret"')
