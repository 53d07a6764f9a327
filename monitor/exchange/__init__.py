"""Talking to exchanges. Wire formats stay inside; domain objects come out."""
