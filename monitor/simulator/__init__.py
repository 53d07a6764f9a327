"""A Bitget simulator: the exchange the demo, the tests and the benchmarks run against.

It answers like Bitget down to signatures, error codes and rate limits (shared/bitget-api.md), for accounts
generated from a seed or loaded from a scenario file. `/_sim/` is its control API.
"""
