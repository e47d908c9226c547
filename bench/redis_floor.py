"""``python -m bench.redis_floor``: what Redis itself needs per drained row.

The least work any drain of the documented key layout (one string key per
value, the run's ids in a set, a TTL per value once it is durable) asks of
redis-server, with none of the drain's bookkeeping: no lease, no in-flight
records, no Lua around the reads, no PostgreSQL. On a private, throwaway
redis-server, per width and repetition, the same ``--records`` values are
written afresh (MSET + SADD) before each variant, and the variants alternate:

- ``read``: ``SSCAN`` of the run set, ``--pop`` ids at a time, each chunk's
  ``MGET`` pipelined with the next ``SSCAN`` (as the drain sends them);
- ``read+ttl``: the same, plus one ``PEXPIREAT`` per value, pipelined;
- ``read+ttl lua``: the same, the ``PEXPIREAT``s run by one script call per
  chunk (the keys given as KEYS, so no string is built in Lua);
- ``read+ttl later``: as ``read+ttl lua``, but each chunk's keys expired
  ``--batch`` rows later, as a drain must (a value gets its TTL once durable:
  after its batch's COMMIT, while the next batch is read). The keys have left
  the CPU's caches by then: this, not ``read+ttl lua``, is the floor for the
  layout's rule.

Reported: redis-server CPU per row (psutil on the process), ``INFO
commandstats`` per command, and the longest call (``SLOWLOG``, calls over
``--slowlog-us``). These are the floor the drain's own figures (``python -m
bench`` and ``python -m bench.redis_cost``) compare with: a budget below it
cannot be met by any bookkeeping.

    python -m bench.redis_floor --records 1000000 --repeat 2 [--width both] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import deque
from typing import Any

import orjson

from syncwd_fast.connection import redis_from_url
from syncwd_fast.keys import PartitionKeys
from syncwd_fast.servers import RedisServer
from syncwd_fast.table import Table

from . import data, write_side
from .__main__ import _positive
from .redis_cost import RedisMeter

VARIANTS = ("read", "read+ttl", "read+ttl lua", "read+ttl later")
TTL_MS = 7 * 86_400 * 1000  # the default TTL
EXPIRE_LUA = "local at = ARGV[1] for i = 1, #KEYS do redis.call('PEXPIREAT', KEYS[i], at) end return #KEYS"
TABLE = Table("floor", key="id")
KEYS = PartitionKeys("floor", TABLE.name, 0)  # the values and, as the run set, the dirty set
PREFIX = KEYS.value_prefix.encode()
UNCOUNTED = ("config", "slowlog", "info")  # the meter's own calls


def _write(client: Any, width: str, records: int) -> None:
    client.flushall()
    write_side.bulk(client, TABLE, "floor", width, records, 1, 10_000)


def _drain(client: Any, variant: str, pop: int, sha: str, batch: int) -> int:
    """Read the run set through, as the variant does; returns the rows read."""
    cursor, rows, keys, started = 0, 0, list[bytes](), False
    later: deque[list[bytes]] = deque()  # read+ttl later: chunks read, not expired yet
    lag = max(1, batch // pop)
    while True:
        pipe = client.pipeline(transaction=False)
        if keys:
            pipe.execute_command("MGET", *keys)
            at = str(int(time.time() * 1000) + TTL_MS)
            if variant == "read+ttl":
                for key in keys:
                    pipe.execute_command("PEXPIREAT", key, at)
            elif variant == "read+ttl lua":
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, at)
            elif variant == "read+ttl later":
                later.append(keys)
        done = cursor == 0 and started
        while later and (done or len(later) > lag):
            chunk = later.popleft()
            pipe.execute_command("EVALSHA", sha, len(chunk), *chunk, str(int(time.time() * 1000) + TTL_MS))
        if done:  # read through: the last chunk's MGET (and what waited to expire) went above
            if len(pipe):
                pipe.execute()
            return rows
        pipe.execute_command("SSCAN", KEYS.dirty, cursor, "COUNT", pop)
        started = True
        cursor, ids = pipe.execute()[-1]
        cursor = int(cursor)
        keys = [PREFIX + i for i in ids]
        rows += len(ids)


def _measure(meter: RedisMeter, variant: str, pop: int, sha: str, batch: int) -> dict[str, Any]:
    meter.start()
    rows = _drain(meter.client, variant, pop, sha, batch)
    m = meter.stop()
    keyspace = meter.client.info("keyspace")
    return {
        "rows": rows,
        "expiring": sum(db.get("expires", 0) for db in keyspace.values() if isinstance(db, dict)),
        "rows_per_s": rows / m["seconds"],
        "redis_us_per_row": m["cpu_psutil_s"] * 1e6 / rows,
        "longest_call_ms": max((c["max_usec"] for c in m["calls"].values()), default=0) / 1000,
        "commands_us_per_row": {
            name: round(c["usec"] / rows, 3)
            for name, c in m["commands"].items()
            if c["usec"] / rows >= 0.005 and name not in UNCOUNTED
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=_positive, default=1_000_000)
    parser.add_argument("--pop", type=_positive, default=125, help="ids per SSCAN/MGET (the drain's pop size)")
    parser.add_argument(
        "--batch", type=_positive, default=5000, help="rows read before a chunk is expired (read+ttl later)"
    )
    parser.add_argument("--repeat", type=_positive, default=2)
    parser.add_argument("--width", choices=(*data.WIDTHS, "both"), default="both")
    parser.add_argument("--slowlog-us", type=int, default=1000)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    widths = data.WIDTHS if args.width == "both" else (args.width,)
    server = RedisServer(
        extra_args=("--slowlog-log-slower-than", str(args.slowlog_us), "--slowlog-max-len", "1000000")
    ).start()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        assert server.process is not None
        client = redis_from_url(server.url, timeout_s=120.0)
        meter = RedisMeter(client, server.process.pid)
        sha = client.script_load(EXPIRE_LUA)
        for width in widths:
            results[width] = {v: [] for v in VARIANTS}
            for i in range(args.repeat):
                for variant in VARIANTS if i % 2 == 0 else reversed(VARIANTS):  # A-B-C, C-B-A, ...
                    _write(client, width, args.records)
                    r = _measure(meter, variant, args.pop, sha, args.batch)
                    results[width][variant].append(r)
                    print(
                        f"{width} {variant}: {r['redis_us_per_row']:.2f} us/row, longest call"
                        f" {r['longest_call_ms']:.2f} ms, {r['rows_per_s']:,.0f} rows/s",
                        file=sys.stderr,
                        flush=True,
                    )
        client.close()
    finally:
        server.close()
    print(f"\nredis-server CPU per row, {args.records:,} records, {args.pop} ids per call, median of {args.repeat}")
    for width, variants in results.items():
        for variant, runs in variants.items():
            commands: dict[str, float] = {}
            for name in sorted({n for r in runs for n in r["commands_us_per_row"]}):
                commands[name] = statistics.median(r["commands_us_per_row"].get(name, 0.0) for r in runs)
            print(
                f"  {width:6} {variant:14} {statistics.median(r['redis_us_per_row'] for r in runs):5.2f} us/row"
                f" (runs: {', '.join(format(r['redis_us_per_row'], '.2f') for r in runs)}); longest call"
                f" {max(r['longest_call_ms'] for r in runs):.2f} ms; "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(commands.items(), key=lambda kv: -kv[1]))
            )
    if args.json_out:
        with open(args.json_out, "wb") as f:
            f.write(orjson.dumps({"records": args.records, "pop": args.pop, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
