"""Process settings for a latency-bound server (``ars-engine serve``; bench_api uses the same).

Measured with bench/bench_api.py (SQLite, 200 POST /v1/calls per second, 2 vCPU, 2026-11-25):
p99 20.5-35.5 ms and max 95-143 ms with CPython's defaults, 11-17 ms / 15-39 ms with the
collector tuned, 10.7-12.6 ms / 15-19 ms with the shorter GIL switch interval as well.
"""

from __future__ import annotations

import gc
import sys

GC_THRESHOLDS = (100_000, 50, 1000)
SWITCH_INTERVAL = 0.001  # seconds


def tune_runtime() -> None:
    """Call once, after start-up has loaded what lives as long as the process.

    - ``gc.freeze()`` moves everything allocated so far (modules, the prompt catalogue, the
      scenarios) out of the collector's sight, and the higher thresholds make full collections
      rare: each request allocates many short-lived ORM objects, and with the default
      threshold (700) full collections came often enough, at tens of milliseconds each, to
      set the API's p99. Cycles are still collected, later.
    - A 1 ms GIL switch interval (default 5 ms) shortens the hand-offs between the event loop
      and the store's SQLite thread (:meth:`ars_engine.store.db.Store.run`).
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
