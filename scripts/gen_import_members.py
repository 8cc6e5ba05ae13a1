#!/usr/bin/env python3
"""Writes N member lines for `omo import members` (JSON Lines) to stdout, deterministic.

    scripts/gen_import_members.py 1000000 > members.jsonl

Each member: external_id ext-<n>, a card and (every other one) an email identifier, a display
name, two attributes, an opening balance of one to three points entries (one without an expiry
of its own), and (every third) a tier_id.
"""
import json
import sys


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    out = sys.stdout
    write = out.write
    for i in range(1, n + 1):
        identifiers = [{"kind": "card", "value": f"C{i:010d}"}]
        if i % 2 == 0:
            identifiers.append({"kind": "email", "value": f"member{i}@example.com"})
        points = [{"points": 100 + i % 900, "expires_at": f"20{28 + i % 3}-0{1 + i % 9}-15T00:00:00Z"}]
        if i % 3 == 0:
            points.append({"points": 50 + i % 50})
        if i % 5 == 0:
            points.append({"points": 10, "expires_at": "2031-12-31T23:59:59Z"})
        line = {
            "external_id": f"ext-{i}",
            "identifiers": identifiers,
            "display_name": f"Member {i}",
            "attributes": {"segment": ("gold", "silver", "bronze")[i % 3], "home_store": f"s{i % 40}"},
            "points": points,
        }
        if i % 3 == 0:
            line["tier_id"] = "gold"
        write(json.dumps(line, separators=(",", ":")))
        write("\n")


if __name__ == "__main__":
    main()
