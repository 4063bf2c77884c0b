"""The configured network of sites (hospitals) with their region, country and time zone."""

from __future__ import annotations

import tomllib
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ConfigError

DEFAULT_SITES_FILE = Path(__file__).resolve().parent / "sites.toml"
CODINGS = ("ICD10", "ICD10CM", "ICD10GM")


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    region: str
    country: str
    time_zone: str
    coding: str = "ICD10"


def load_sites(path: Path | None = None) -> dict[str, Site]:
    """Sites by id from a TOML file of ``[[site]]`` tables; errors name file and field."""
    path = path or DEFAULT_SITES_FILE
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"sites file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sites file {path}: {exc}") from None
    sites: dict[str, Site] = {}
    for i, entry in enumerate(data.get("site", [])):
        where = f"sites file {path}, site #{i + 1}"
        missing = [k for k in ("id", "name", "region", "country", "time_zone") if not entry.get(k)]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        try:
            zoneinfo.ZoneInfo(entry["time_zone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown time_zone {entry['time_zone']!r}") from None
        coding = entry.get("coding", "ICD10")
        if coding not in CODINGS:
            raise ConfigError(f"{where}: coding must be one of {', '.join(CODINGS)}")
        if entry["id"] in sites:
            raise ConfigError(f"{where}: duplicate id {entry['id']!r}")
        sites[entry["id"]] = Site(entry["id"], entry["name"], entry["region"], entry["country"],
                                  entry["time_zone"], coding)
    if not sites:
        raise ConfigError(f"sites file {path} defines no [[site]]")
    return sites
