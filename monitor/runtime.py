"""Process-wide settings for a long-running monitor."""

from __future__ import annotations

import gc

# Python's default, a young collection every 700 allocations, suits short scripts. The monitor keeps thousands
# of requests in flight: their objects outlive a few young collections, are traversed again and again, get
# promoted, and then make full collections walk every account's state. At 1000 accounts that was half of the
# process's CPU time (bench/cycle.py); with these thresholds, about a tenth. Objects that are garbage without
# cycles are freed at once whatever the thresholds; only cyclic garbage waits a little longer.
GC_THRESHOLDS = (10_000, 10, 10)
_frozen = False


def tune_gc() -> None:
    """Collect young objects less often and, the first time only, move what is alive now (modules,
    configuration, accounts) out of the collector's way for good: it lives as long as the process. Call once
    everything long-lived is built."""
    global _frozen
    gc.set_threshold(*GC_THRESHOLDS)
    if not _frozen:
        gc.collect()  # garbage frozen now would never be collected
        gc.freeze()
        _frozen = True
