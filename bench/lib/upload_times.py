"""Per-object upload times from a snapward JSON log (a benchmark helper).

    python3 upload_times.py LOG [KEY_SUFFIX]

Pairs each "uploading snapshot" line with the "upload confirmed" line of the
same key and prints "<key> <bytes> <seconds>" (the put itself: multipart
upload + read-back HEAD; not the inventory/HEAD before it). With KEY_SUFFIX
only keys ending with it.
"""

import json
import sys
from datetime import datetime


def ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main() -> int:
    suffix = sys.argv[2] if len(sys.argv) > 2 else ""
    started = {}
    for line in open(sys.argv[1]):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        f = rec.get("fields", {})
        key = f.get("key")
        if not key or not key.endswith(suffix):
            continue
        if f.get("message") == "uploading snapshot":
            started[key] = ts(rec["timestamp"])
        elif f.get("message") == "upload confirmed" and key in started:
            print(f"{key} {f.get('size')} {ts(rec['timestamp']) - started.pop(key):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
