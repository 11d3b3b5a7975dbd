#!/usr/bin/env python3
"""Extracts the UN M49 region tree (world -> regions -> sub-regions -> countries) from Debian's
`unicode-cldr-core` package into `m49_regions.json`, the file the origin's seed loader reads.

Usage: extract_regions.py CLDR_COMMON_DIR > m49_regions.json
(CLDR_COMMON_DIR is /usr/share/unicode/cldr/common once `apt-get install unicode-cldr-core`.)
Only the primary containment groups are kept: CLDR's "grouping" and "deprecated" entries
(EU, Eurozone, Latin America, ...) overlap the primary tree and would give a node two parents.
"""
import json
import sys
import xml.etree.ElementTree as ET

common = sys.argv[1]
supplemental = ET.parse(f"{common}/supplemental/supplementalData.xml").getroot()
english = ET.parse(f"{common}/main/en.xml").getroot()

names = {
    t.get("type"): t.text
    for t in english.iter("territory")
    if t.get("alt") is None
}

parent_of = {}
for group in supplemental.find("territoryContainment"):
    if group.get("status") or group.get("grouping"):
        continue
    for child in group.get("contains").split():
        parent_of[child] = group.get("type")

regions = sorted(
    {code for code in parent_of.values()} | {code for code in parent_of if code.isdigit() or code == "QO"}
)
out = {
    "source": "Unicode CLDR (Debian unicode-cldr-core), supplementalData.xml territoryContainment",
    "regions": [
        {"code": code, "name": names[code], "parent": parent_of.get(code)}
        for code in regions
    ],
    "countries": {
        code: parent
        for code, parent in sorted(parent_of.items())
        if not (code.isdigit() or code == "QO")
    },
}
json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
print()
