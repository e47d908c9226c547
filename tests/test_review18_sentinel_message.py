"""Review of issue 18: sentinels that cannot be reached get a clear message
naming them and what failed, not redis-py's repr of its sentinel clients (a
kilobyte of connection internals: pools, handlers, object addresses)."""

from __future__ import annotations

from click.testing import CliRunner

from syncwd_fast.cli import main
from syncwd_fast.servers import RedisServer, free_port

from .helpers import cli, last_json


def test_sentinels_out_of_reach_are_named_plainly(dsn):
    dead = [free_port(), free_port()]
    url = f"redis+sentinel://:master-pw@127.0.0.1:{dead[0]},127.0.0.1:{dead[1]}/app/0"
    done = cli("status", "--redis", url, "--json")
    assert done.returncode == 3, done.stderr  # a fault, retried by a drain: the sentinels may come back
    error = last_json(done.stdout)["error"]
    assert "<redis." not in error and "object at 0x" not in error, error
    assert f"127.0.0.1:{dead[0]}" in error and f"127.0.0.1:{dead[1]}" in error, error
    assert "'app'" in error and "Connection refused" in error, error
    assert len(error) < 400, error

    drained = CliRunner().invoke(
        main, ["drain", "--sentinel", f"127.0.0.1:{dead[0]}", "--service", "app", "--dsn", dsn, "--retries", "0"]
    )
    assert drained.exit_code == 3, drained.output
    assert "<redis." not in drained.output and f"127.0.0.1:{dead[0]}" in drained.output, drained.output


def test_a_plain_redis_named_as_a_sentinel_says_so(dsn):
    """A Redis that is no sentinel (a wrong port: the master's, say) answers
    SENTINEL with an error: said as such, with its address."""
    with RedisServer() as plain:
        done = cli("status", "--sentinel", f"127.0.0.1:{plain.port}", "--service", "app", "--json")
    assert done.returncode == 2, done.stderr  # configuration: no retry makes a Redis a sentinel
    error = last_json(done.stdout)["error"]
    assert "<redis." not in error and "object at 0x" not in error, error
    assert f"127.0.0.1:{plain.port}" in error and "no sentinel" in error, error
