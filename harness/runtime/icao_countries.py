"""Country of registration from an aircraft's ICAO 24-bit address (the `origin_country` field).

Every aircraft transponder has a 24-bit address, written as six hex digits (`icao24`). ICAO hands
out blocks of addresses to States (ICAO Annex 10, Volume III, Part I, Chapter 9, appendix: "A
worldwide scheme for the allocation, assignment and application of aircraft addresses"), and each
State assigns addresses from its block to the aircraft on its register. So the block an address
falls into names the State of registry — not the airline's country nor where the aircraft flies.
The OpenSky Network derives `origin_country` in `/api/states/all` the same way.

`ALLOCATIONS` is that table as data: (first address, last address, State), non-overlapping, sorted.
Addresses outside every block (unallocated, reserved) map to `UNKNOWN`.
"""

from __future__ import annotations

from bisect import bisect_right

UNKNOWN = "Unknown"

# (first, last, State) — inclusive hex bounds. Blocks of 1024 (…3FF), 4096 (…FFF), 32768 (…7FFF),
# 262144 (…3FFFF) or 1048576 (…FFFFF) addresses.
ALLOCATIONS: list[tuple[int, int, str]] = [
    # --- Africa (prefix 0000)
    (0x004000, 0x0043FF, "Zimbabwe"),
    (0x006000, 0x006FFF, "Mozambique"),
    (0x008000, 0x00FFFF, "South Africa"),
    (0x010000, 0x017FFF, "Egypt"),
    (0x018000, 0x01FFFF, "Libya"),
    (0x020000, 0x027FFF, "Morocco"),
    (0x028000, 0x02FFFF, "Tunisia"),
    (0x030000, 0x0303FF, "Botswana"),
    (0x032000, 0x032FFF, "Burundi"),
    (0x034000, 0x034FFF, "Cameroon"),
    (0x035000, 0x0353FF, "Comoros"),
    (0x036000, 0x036FFF, "Congo"),
    (0x038000, 0x038FFF, "Cote d'Ivoire"),
    (0x03E000, 0x03EFFF, "Gabon"),
    (0x040000, 0x040FFF, "Ethiopia"),
    (0x042000, 0x042FFF, "Equatorial Guinea"),
    (0x044000, 0x044FFF, "Ghana"),
    (0x046000, 0x046FFF, "Guinea"),
    (0x048000, 0x0483FF, "Guinea-Bissau"),
    (0x04A000, 0x04A3FF, "Lesotho"),
    (0x04C000, 0x04CFFF, "Kenya"),
    (0x050000, 0x050FFF, "Liberia"),
    (0x054000, 0x054FFF, "Madagascar"),
    (0x058000, 0x058FFF, "Malawi"),
    (0x05A000, 0x05A3FF, "Maldives"),
    (0x05C000, 0x05CFFF, "Mali"),
    (0x05E000, 0x05E3FF, "Mauritania"),
    (0x060000, 0x0603FF, "Mauritius"),
    (0x062000, 0x062FFF, "Niger"),
    (0x064000, 0x064FFF, "Nigeria"),
    (0x068000, 0x068FFF, "Uganda"),
    (0x06A000, 0x06A3FF, "Qatar"),
    (0x06C000, 0x06CFFF, "Central African Republic"),
    (0x06E000, 0x06EFFF, "Rwanda"),
    (0x070000, 0x070FFF, "Senegal"),
    (0x074000, 0x0743FF, "Seychelles"),
    (0x076000, 0x0763FF, "Sierra Leone"),
    (0x078000, 0x078FFF, "Somalia"),
    (0x07A000, 0x07A3FF, "Eswatini"),
    (0x07C000, 0x07CFFF, "Sudan"),
    (0x080000, 0x080FFF, "Tanzania"),
    (0x084000, 0x084FFF, "Chad"),
    (0x088000, 0x088FFF, "Togo"),
    (0x08A000, 0x08AFFF, "Zambia"),
    (0x08C000, 0x08CFFF, "Democratic Republic of the Congo"),
    (0x090000, 0x090FFF, "Angola"),
    (0x094000, 0x0943FF, "Benin"),
    (0x096000, 0x0963FF, "Cape Verde"),
    (0x098000, 0x0983FF, "Djibouti"),
    (0x09A000, 0x09AFFF, "Gambia"),
    (0x09C000, 0x09CFFF, "Burkina Faso"),
    (0x09E000, 0x09E3FF, "Sao Tome and Principe"),
    (0x0A0000, 0x0A7FFF, "Algeria"),
    # --- Caribbean, Central and South America (prefix 0000 1)
    (0x0A8000, 0x0A8FFF, "Bahamas"),
    (0x0AA000, 0x0AA3FF, "Barbados"),
    (0x0AB000, 0x0AB3FF, "Belize"),
    (0x0AC000, 0x0ACFFF, "Colombia"),
    (0x0AE000, 0x0AEFFF, "Costa Rica"),
    (0x0B0000, 0x0B0FFF, "Cuba"),
    (0x0B2000, 0x0B2FFF, "El Salvador"),
    (0x0B4000, 0x0B4FFF, "Guatemala"),
    (0x0B6000, 0x0B6FFF, "Guyana"),
    (0x0B8000, 0x0B8FFF, "Haiti"),
    (0x0BA000, 0x0BAFFF, "Honduras"),
    (0x0BC000, 0x0BC3FF, "Saint Vincent and the Grenadines"),
    (0x0BE000, 0x0BEFFF, "Jamaica"),
    (0x0C0000, 0x0C0FFF, "Nicaragua"),
    (0x0C2000, 0x0C2FFF, "Panama"),
    (0x0C4000, 0x0C4FFF, "Dominican Republic"),
    (0x0C6000, 0x0C6FFF, "Trinidad and Tobago"),
    (0x0C8000, 0x0C8FFF, "Suriname"),
    (0x0CA000, 0x0CA3FF, "Antigua and Barbuda"),
    (0x0CC000, 0x0CC3FF, "Grenada"),
    (0x0D0000, 0x0D7FFF, "Mexico"),
    (0x0D8000, 0x0DFFFF, "Venezuela"),
    # --- Russian Federation (prefix 0001)
    (0x100000, 0x1FFFFF, "Russian Federation"),
    (0x201000, 0x2013FF, "Namibia"),
    (0x202000, 0x2023FF, "Eritrea"),
    # --- Europe (prefixes 0011, 0100, 0101)
    (0x300000, 0x33FFFF, "Italy"),
    (0x340000, 0x37FFFF, "Spain"),
    (0x380000, 0x3BFFFF, "France"),
    (0x3C0000, 0x3FFFFF, "Germany"),
    (0x400000, 0x43FFFF, "United Kingdom"),
    (0x440000, 0x447FFF, "Austria"),
    (0x448000, 0x44FFFF, "Belgium"),
    (0x450000, 0x457FFF, "Bulgaria"),
    (0x458000, 0x45FFFF, "Denmark"),
    (0x460000, 0x467FFF, "Finland"),
    (0x468000, 0x46FFFF, "Greece"),
    (0x470000, 0x477FFF, "Hungary"),
    (0x478000, 0x47FFFF, "Norway"),
    (0x480000, 0x487FFF, "Kingdom of the Netherlands"),
    (0x488000, 0x48FFFF, "Poland"),
    (0x490000, 0x497FFF, "Portugal"),
    (0x498000, 0x49FFFF, "Czech Republic"),
    (0x4A0000, 0x4A7FFF, "Romania"),
    (0x4A8000, 0x4AFFFF, "Sweden"),
    (0x4B0000, 0x4B7FFF, "Switzerland"),
    (0x4B8000, 0x4BFFFF, "Turkey"),
    (0x4C0000, 0x4C7FFF, "Serbia"),
    (0x4C8000, 0x4C83FF, "Cyprus"),
    (0x4CA000, 0x4CAFFF, "Ireland"),
    (0x4CC000, 0x4CCFFF, "Iceland"),
    (0x4D0000, 0x4D03FF, "Luxembourg"),
    (0x4D2000, 0x4D23FF, "Malta"),
    (0x4D4000, 0x4D43FF, "Monaco"),
    (0x500000, 0x5003FF, "San Marino"),
    (0x501000, 0x5013FF, "Albania"),
    (0x501C00, 0x501FFF, "Croatia"),
    (0x502C00, 0x502FFF, "Latvia"),
    (0x503C00, 0x503FFF, "Lithuania"),
    (0x504C00, 0x504FFF, "Republic of Moldova"),
    (0x505C00, 0x505FFF, "Slovakia"),
    (0x506C00, 0x506FFF, "Slovenia"),
    (0x507C00, 0x507FFF, "Uzbekistan"),
    (0x508000, 0x50FFFF, "Ukraine"),
    (0x510000, 0x5103FF, "Belarus"),
    (0x511000, 0x5113FF, "Estonia"),
    (0x512000, 0x5123FF, "North Macedonia"),
    (0x513000, 0x5133FF, "Bosnia and Herzegovina"),
    (0x514000, 0x5143FF, "Georgia"),
    (0x515000, 0x5153FF, "Tajikistan"),
    (0x516000, 0x5163FF, "Montenegro"),
    # --- Central and South Asia, Pacific (prefix 0110)
    (0x600000, 0x6003FF, "Armenia"),
    (0x600800, 0x600BFF, "Azerbaijan"),
    (0x601000, 0x6013FF, "Kyrgyzstan"),
    (0x601800, 0x601BFF, "Turkmenistan"),
    (0x680000, 0x6803FF, "Bhutan"),
    (0x681000, 0x6813FF, "Micronesia"),
    (0x682000, 0x6823FF, "Mongolia"),
    (0x683000, 0x6833FF, "Kazakhstan"),
    (0x684000, 0x6843FF, "Palau"),
    # --- Middle East and Asia (prefixes 0111, 1000)
    (0x700000, 0x700FFF, "Afghanistan"),
    (0x702000, 0x702FFF, "Bangladesh"),
    (0x704000, 0x704FFF, "Myanmar"),
    (0x706000, 0x706FFF, "Kuwait"),
    (0x708000, 0x708FFF, "Laos"),
    (0x70A000, 0x70AFFF, "Nepal"),
    (0x70C000, 0x70C3FF, "Oman"),
    (0x70E000, 0x70EFFF, "Cambodia"),
    (0x710000, 0x717FFF, "Saudi Arabia"),
    (0x718000, 0x71FFFF, "Republic of Korea"),
    (0x720000, 0x727FFF, "Democratic People's Republic of Korea"),
    (0x728000, 0x72FFFF, "Iraq"),
    (0x730000, 0x737FFF, "Iran"),
    (0x738000, 0x73FFFF, "Israel"),
    (0x740000, 0x747FFF, "Jordan"),
    (0x748000, 0x74FFFF, "Lebanon"),
    (0x750000, 0x757FFF, "Malaysia"),
    (0x758000, 0x75FFFF, "Philippines"),
    (0x760000, 0x767FFF, "Pakistan"),
    (0x768000, 0x76FFFF, "Singapore"),
    (0x770000, 0x777FFF, "Sri Lanka"),
    (0x778000, 0x77FFFF, "Syria"),
    (0x780000, 0x7BFFFF, "China"),
    (0x7C0000, 0x7FFFFF, "Australia"),
    (0x800000, 0x83FFFF, "India"),
    (0x840000, 0x87FFFF, "Japan"),
    (0x880000, 0x887FFF, "Thailand"),
    (0x888000, 0x88FFFF, "Viet Nam"),
    (0x890000, 0x890FFF, "Yemen"),
    (0x894000, 0x894FFF, "Bahrain"),
    (0x895000, 0x8953FF, "Brunei"),
    (0x896000, 0x896FFF, "United Arab Emirates"),
    (0x897000, 0x8973FF, "Solomon Islands"),
    (0x898000, 0x898FFF, "Papua New Guinea"),
    (0x899000, 0x8993FF, "Taiwan"),
    (0x8A0000, 0x8A7FFF, "Indonesia"),
    # --- Pacific islands (prefix 1001)
    (0x900000, 0x9003FF, "Marshall Islands"),
    (0x901000, 0x9013FF, "Cook Islands"),
    (0x902000, 0x9023FF, "Samoa"),
    # --- North America (prefix 1010: the whole A-block is the United States)
    (0xA00000, 0xAFFFFF, "United States"),
    (0xC00000, 0xC3FFFF, "Canada"),
    # --- Oceania (prefix 1100 1)
    (0xC80000, 0xC87FFF, "New Zealand"),
    (0xC88000, 0xC88FFF, "Fiji"),
    (0xC8A000, 0xC8A3FF, "Nauru"),
    (0xC8C000, 0xC8C3FF, "Saint Lucia"),
    (0xC8D000, 0xC8D3FF, "Tonga"),
    (0xC8E000, 0xC8E3FF, "Kiribati"),
    (0xC90000, 0xC903FF, "Vanuatu"),
    # --- South America (prefix 1110)
    (0xE00000, 0xE3FFFF, "Argentina"),
    (0xE40000, 0xE7FFFF, "Brazil"),
    (0xE80000, 0xE80FFF, "Chile"),
    (0xE84000, 0xE84FFF, "Ecuador"),
    (0xE88000, 0xE88FFF, "Paraguay"),
    (0xE8C000, 0xE8CFFF, "Peru"),
    (0xE90000, 0xE90FFF, "Uruguay"),
    (0xE94000, 0xE94FFF, "Bolivia"),
    # --- ICAO's own blocks (temporary addresses, special use)
    (0xF00000, 0xF07FFF, "ICAO (temporary address)"),
    (0xF09000, 0xF093FF, "ICAO (special use)"),
]

_STARTS = [first for first, _, _ in ALLOCATIONS]


def country_of(icao24: str | int | None) -> str:
    """The State whose block holds `icao24` (hex string like "3c6444", or an int); else "Unknown"."""
    if icao24 is None:
        return UNKNOWN
    if isinstance(icao24, str):
        try:
            address = int(icao24.strip(), 16)
        except ValueError:
            return UNKNOWN
    else:
        address = int(icao24)
    if not 0 <= address <= 0xFFFFFF:
        return UNKNOWN
    i = bisect_right(_STARTS, address) - 1
    if i >= 0 and address <= ALLOCATIONS[i][1]:
        return ALLOCATIONS[i][2]
    return UNKNOWN


def _check_table() -> None:
    """The blocks are sorted, non-empty and do not overlap (checked at import)."""
    previous_last = -1
    for first, last, name in ALLOCATIONS:
        if not (previous_last < first <= last <= 0xFFFFFF):
            raise AssertionError(f"ICAO allocation table out of order or overlapping at {name}")
        previous_last = last


_check_table()
