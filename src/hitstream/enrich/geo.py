"""Country from an IP address, offline (iptocc's table ships in its wheel); the IP is not kept."""

from __future__ import annotations

import iptocc


class IptoccCountryLookup:
    """ISO 3166 alpha-2 code for an IP, or "" for private, reserved or unknown addresses
    (the collector's ``CountryLookup``)."""

    def country(self, ip: str) -> str:
        if not ip:
            return ""
        try:
            code = iptocc.country_code(ip)
        except (ValueError, TypeError):
            return ""
        return code or ""
