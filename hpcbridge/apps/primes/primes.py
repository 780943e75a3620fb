"""Count primes below a limit; parameters come from job.json (written by hpcbridge)."""
import csv
import json
import os
import time

with open(os.environ["HPCBRIDGE_JOB_JSON"]) as f:
    params = json.load(f)["params"]
limit, method = int(params["limit"]), params["method"]
start = time.time()
if method == "sieve":
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for n in range(2, int(limit ** 0.5) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytearray(len(range(n * n, limit, n)))
    primes = [i for i, p in enumerate(sieve) if p]
else:
    primes = [n for n in range(2, limit) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
elapsed = time.time() - start
print(f"{len(primes)} primes below {limit} ({method}, {elapsed:.2f}s)", flush=True)
out = os.environ["HPCBRIDGE_RESULT_DIR"]
with open(os.path.join(out, "primes.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["index", "prime"])
    writer.writerows(enumerate(primes[-1000:], start=max(0, len(primes) - 1000)))
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"limit": limit, "method": method, "count": len(primes),
               "largest": primes[-1] if primes else None, "seconds": elapsed}, f)
