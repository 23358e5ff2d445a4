#!/usr/bin/env python3
"""Load benchmark of a running server (stdlib only): discovery GETs and client_credentials
token requests, each with keep-alive connections from C threads. Reports requests/s and
latency percentiles. Assertions are single-use (CLI-6), so they are made beforehand by
`ciba-host assertion`.

    python3 bench/bench.py --base http://127.0.0.1:3100 --requests 2000 --concurrency 4
"""
import argparse
import http.client
import statistics
import subprocess
import threading
import time
import urllib.parse


def run(base, paths_and_bodies, concurrency):
    url = urllib.parse.urlparse(base)
    latencies, errors, lock = [], [0], threading.Lock()
    chunks = [paths_and_bodies[i::concurrency] for i in range(concurrency)]

    def worker(items):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        mine = []
        for method, path, body, headers in items:
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status >= 400:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, q(0.95), errors[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:3100")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--host-binary", default="target/release/ciba-host")
    args = ap.parse_args()
    listen = urllib.parse.urlparse(args.base).netloc

    gets = [("GET", "/.well-known/openid-configuration", None, {})] * args.requests
    rps, p50, p95, errs = run(args.base, gets, args.concurrency)
    print(f"discovery GET      : {rps:8.0f} req/s  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  errors {errs}")

    n = max(1, args.requests // 4)
    out = subprocess.run(
        ["sh", "-c", f"for i in $(seq {n}); do {args.host_binary} assertion --listen {listen}; done"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    form = "application/x-www-form-urlencoded"
    posts = [
        ("POST", "/token",
         "grant_type=client_credentials&scope=consents&client_assertion_type="
         "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" + a,
         {"content-type": form})
        for a in out
    ]
    rps, p50, p95, errs = run(args.base, posts, args.concurrency)
    print(f"client_credentials : {rps:8.0f} req/s  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  errors {errs}")


if __name__ == "__main__":
    main()
