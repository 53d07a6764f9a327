"""One mark price as the feed last read it: the value types the feed hands out and the live arithmetic takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Mark:
    """The mark of one futures symbol, and when it was asked for (every answer is at least this recent)."""

    product_type: str
    symbol: str
    price: Decimal
    at: datetime  # timezone-aware UTC
