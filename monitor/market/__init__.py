"""Real-time market data shared by every account: the mark-price feed, and positions re-priced from it."""
