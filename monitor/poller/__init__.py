"""Polling many accounts inside Bitget's budgets, with faults isolated per account."""
