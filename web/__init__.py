"""The status web page (aiohttp + Jinja2): overview, account pages, JSON API, health and metrics."""
