"""Bitget's REST API: signing, endpoints, error codes, response parsing and the async client."""
