"""Fill an OpenBao kv-v2 mount with random secrets (a benchmark helper).

    python fill.py ADDR TOKEN_FILE MOUNT TARGET_MIB [WORKERS] [VALUE_KIB] [START]

Writes secrets `<MOUNT>/data/bench/<n>` (n = START, START+1, ...) whose
single value is VALUE_KIB KiB of base64 random text (default 512: one raft
entry stays below OpenBao's 1 MiB raft max_entry_size) until TARGET_MIB MiB
of values are written, with WORKERS concurrent HTTP writers. Prints progress
to stderr and "written <count> <bytes> <seconds>" to stdout.
Only the standard library: runs on the test venv's python.
"""

import base64
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def main() -> int:
    addr, token_file, mount, target_mib = sys.argv[1:5]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    value_kib = int(sys.argv[6]) if len(sys.argv) > 6 else 512
    start = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    token = open(token_file).read().strip()
    url = urllib.parse.urlparse(addr)
    raw = value_kib * 1024 * 3 // 4  # base64 grows 4/3
    count = -(-int(target_mib) * 1024 * 1024 // (value_kib * 1024))
    lock = threading.Lock()
    state = {"next": start, "done": 0, "bytes": 0, "error": None}
    t0 = time.monotonic()

    def worker() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        while True:
            with lock:
                if state["error"] or state["next"] >= start + count:
                    return
                n = state["next"]
                state["next"] += 1
            value = base64.b64encode(os.urandom(raw)).decode()
            body = json.dumps({"data": {"v": value}})
            for attempt in range(5):
                try:
                    conn.request(
                        "POST",
                        f"/v1/{mount}/data/bench/{n}",
                        body=body,
                        headers={"X-Vault-Token": token, "Content-Type": "application/json"},
                    )
                    resp = conn.getresponse()
                    payload = resp.read()
                    if resp.status in (200, 204):
                        break
                    err = f"HTTP {resp.status}: {payload[:300]!r}"
                except (OSError, http.client.HTTPException) as e:
                    err = repr(e)
                    conn.close()
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
                time.sleep(0.5 * (attempt + 1))
            else:
                with lock:
                    state["error"] = f"secret {n}: {err}"
                return
            with lock:
                state["done"] += 1
                state["bytes"] += len(value)
                done = state["done"]
            if done % 100 == 0:
                el = time.monotonic() - t0
                print(
                    f"  fill: {done}/{count} secrets, {state['bytes'] / 2**20:.0f} MiB "
                    f"in {el:.0f} s ({state['bytes'] / 2**20 / el:.1f} MiB/s)",
                    file=sys.stderr,
                    flush=True,
                )

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"]:
        print(f"fill failed: {state['error']}", file=sys.stderr)
        return 1
    print(f"written {state['done']} {state['bytes']} {time.monotonic() - t0:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
