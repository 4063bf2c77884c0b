# mypyc: compiled (the per-event path: setup.py)
"""The scopes an indicator is aggregated over, from one site to the whole network."""

from typing import Final

SITE: Final = "SITE"
REGION: Final = "REGION"
COUNTRY: Final = "COUNTRY"
NETWORK: Final = "NETWORK"
SCOPES: Final = (SITE, REGION, COUNTRY, NETWORK)
NETWORK_ID: Final = "network"  # the scope id of the NETWORK scope (and the metrics' site label for it)
FEDERATED: Final = frozenset({COUNTRY, NETWORK})  # what the federation topic shares: aggregates beyond a site
