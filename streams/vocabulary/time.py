# mypyc: compiled (the per-event path: setup.py)
"""Time units: the engine keeps every instant and duration in integer microseconds (UTC).

Literal values, so that mypyc inlines them into the compiled modules that import them.
"""

from typing import Final

SECOND_US: Final = 1_000_000
MINUTE_US: Final = 60_000_000
HOUR_US: Final = 3_600_000_000
DAY_US: Final = 86_400_000_000
