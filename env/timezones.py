"""Time zone names as traders type them.

IANA names are case-sensitive where the zone database is a folder of files (Linux:
``ZoneInfo("utc")`` fails) and not on Windows, so the same ``--data-timezone utc`` would
work on one machine and not on the other. Every zone name a user gives goes through
:func:`canonical_zone`, which matches it in any case and returns the IANA spelling.
"""

from __future__ import annotations

import difflib
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

EXAMPLES = "use an IANA name such as 'UTC' or 'America/Chicago'"


# US time zone abbreviations a trader may type, and the region each stands for. The
# database's "EST", "MST" and "HST" are fixed offsets, and "CST"/"PST" are not in it.
_US_ABBREVIATIONS = {
    "est": "America/New_York",
    "edt": "America/New_York",
    "et": "America/New_York",
    "cst": "America/Chicago",
    "cdt": "America/Chicago",
    "ct": "America/Chicago",
    "mst": "America/Denver",
    "mdt": "America/Denver",
    "pst": "America/Los_Angeles",
    "pdt": "America/Los_Angeles",
    "hst": "Pacific/Honolulu",
}


@functools.lru_cache(maxsize=1)
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def canonical_zone(name: str) -> str:
    """The IANA spelling of the zone ``name`` in any case (``"utc"`` -> ``"UTC"``,
    ``"america/chicago"`` -> ``"America/Chicago"``).

    Raises:
        ValueError: one line naming ``name`` and what to do, with the closest known
            names when there are some.
    """
    zones = _zones_by_folded_name()
    text = str(name).strip()
    local = _US_ABBREVIATIONS.get(text.casefold())
    if local is not None:
        # EST, MST and HST are fixed offsets (no daylight saving): a file in New York
        # time read as "est" would be an hour off from March to November.
        raise ValueError(
            f"ambiguous time zone {name!r}: abbreviations are fixed offsets without "
            f"daylight saving; use the region's IANA name, e.g. {local!r}"
        )
    found = zones.get(text.casefold())
    if found is not None:
        return found
    try:  # a zone the database has but does not list (e.g. a link); exact spelling only
        ZoneInfo(text)
        return text
    except (ZoneInfoNotFoundError, ValueError):
        pass
    if not zones:
        raise ValueError(
            f"unknown time zone {name!r}: this Python has no time zone database; "
            "install it with: python -m pip install tzdata"
        )
    raise ValueError(f"unknown time zone {name!r}{_suggestion(text, zones)}; {EXAMPLES}")


def zone_info(name: str) -> ZoneInfo:
    """``ZoneInfo`` of :func:`canonical_zone` ``(name)``."""
    return ZoneInfo(canonical_zone(name))


def _suggestion(text: str, zones: dict[str, str]) -> str:
    """`` (did you mean 'A' or 'B'?)`` for the closest names, else ``""``: a city alone
    (``"chicago"``) matches the zones it ends, anything else by similarity."""
    folded = text.casefold()
    if folded == "z":  # ISO 8601's mark for UTC (14:30Z); by spelling it is nearest "NZ"
        return " (did you mean 'UTC'? a Z after a time means UTC)"
    close = [zones[z] for z in sorted(zones) if z.rsplit("/", 1)[-1] == folded]
    if not close:
        close = [zones[z] for z in difflib.get_close_matches(folded, list(zones), n=3)]
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(z) for z in close[:3]) + "?)"
