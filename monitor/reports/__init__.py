"""Scheduled reports: when they are due, what they say, how they read."""
