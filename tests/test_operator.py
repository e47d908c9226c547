"""What cron, Kubernetes and monitoring read: exit codes, the --json report,
`status`, signals and warnings, through real subprocesses and real servers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid

import psycopg
import pytest
import redis as redis_lib

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.servers import RedisServer, ServerUnavailable

from .helpers import cli, count, drain_command, last_json, wait_for

N = 300_000


@pytest.fixture
def big(r, db, schema, prefix):
    db.execute(f"CREATE TABLE {schema}.big (id int PRIMARY KEY, v int NOT NULL)")
    t = Table(f"{schema}.big", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, ({"id": i, "v": i} for i in range(N)))
    return t


def leases(r, t, prefix):
    return [n for n in range(t.partitions) if r.exists(t.keys(n, prefix).lease)]


def start(command):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt(command, ready, *sigs, gap=0.05, timeout=60.0):
    """Run ``command``, wait until ``ready()``, send ``sigs`` ``gap`` seconds
    apart; returns (exit code, stdout, stderr, seconds from the first signal to the exit)."""
    proc = start(command)
    try:
        assert wait_for(ready, timeout=120), "the command never got ready to be signalled"
        signalled = time.monotonic()
        for n, sig in enumerate(sigs):
            if n:
                time.sleep(gap)
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stdout, stderr, time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# --- signals ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_batch_in_flight_and_the_rerun_finishes(r, db, redis_url, dsn, prefix, big, sig):
    command = drain_command(redis_url, dsn, prefix, "--batch", "2000", "--json")
    code, stdout, stderr, stopped_in = interrupt(command, lambda: count(db, big.name) >= 10_000, sig)
    assert code == 4, stderr
    report = last_json(stdout)
    assert report["interrupted"] == sig.name and report["exit_code"] == 4 and report["aborted"] is None
    landed = count(db, big.name)
    assert report["upserted"] == landed < N  # it counted what it merged, and stopped early
    assert stopped_in < 10, stopped_in  # a batch of 2000, not the whole drain
    assert f"{sig.name}: stopping after the batch in flight" in stderr
    assert leases(r, big, prefix) == []  # released: a re-run adopts at once
    out = subprocess.run([*drain_command(redis_url, dsn, prefix), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rerun = last_json(out.stdout)
    assert rerun["tables"][big.name]["busy"] == [] and count(db, big.name) == N
    assert "taking the partition over" not in out.stderr  # nothing to wait for


def test_a_second_signal_stops_at_once_and_still_releases_the_leases(r, db, redis_url, dsn, prefix, big):
    # The second batch of 50,000 is being merged: stop it twice.
    command = drain_command(redis_url, dsn, prefix, "--batch", "50000", "--json")
    code, stdout, stderr, _ = interrupt(command, lambda: count(db, big.name) > 0, signal.SIGINT, signal.SIGINT)
    assert code == 4, stderr
    assert last_json(stdout)["interrupted"] == "SIGINT"
    assert leases(r, big, prefix) == []
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert report.exit_code == 0 and report.tables[big.name].busy == [] and count(db, big.name) == N


def test_schedule_stops_on_sigterm_with_the_report(r, db, redis_url, dsn, prefix, big):
    command = [sys_python(), "-m", "syncwd_fast", "schedule", "--redis", redis_url, "--dsn", dsn]
    command += ["--prefix", prefix, "--every", "1s", "--batch", "2000", "--json"]
    code, stdout, stderr, _ = interrupt(command, lambda: count(db, big.name) >= 10_000, signal.SIGTERM)
    assert code == 4, stderr
    assert last_json(stdout)["interrupted"] == "SIGTERM"
    assert leases(r, big, prefix) == []


def sys_python():
    import sys

    return sys.executable


def test_status_json_while_a_drain_is_stopped_mid_run(r, db, redis_url, dsn, prefix, big):
    proc = start(drain_command(redis_url, dsn, prefix, "--batch", "1000"))
    try:
        assert wait_for(lambda: count(db, big.name) >= 5000, timeout=120)
        proc.send_signal(signal.SIGSTOP)
        out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json")
        assert out.returncode == 0, out.stderr
        status = last_json(out.stdout)
        table = status["tables"][big.name]
        assert table["active_runs"] and table["leases"]
        assert any(f"pid {proc.pid} " in holder for holder in table["leases"].values())
        assert table["in_run"] + table["inflight"] + table["dirty"] > 0
        assert isinstance(status["warnings"], list)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.communicate()


# --- configuration errors and faults -------------------------------------------


@pytest.mark.parametrize(
    "dsn_extra, message",
    [("dbname=no_such_db_here", 'database "no_such_db_here" does not exist'), ("user=no_such_role", "no_such_role")],
)
def test_configuration_errors_exit_2_at_once(redis_url, prefix, base_dsn, dsn_extra, message):
    dsn = f"{base_dsn} {dsn_extra}"
    started = time.monotonic()
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json", timeout=60)
    took = time.monotonic() - started
    assert out.returncode == 2, out.stderr
    # At once: the 5 default retries would sleep 0.5 + 1 + 2 + 4 + 8 s first. The
    # bound leaves room for a busy machine's slow start (6 s seen under CI load).
    assert message in out.stderr and took < 12, (took, out.stderr)
    report = last_json(out.stdout)
    assert report["exit_code"] == 2 and message in report["error"]


def test_usage_errors_still_print_the_json_report(redis_url, dsn, prefix):
    for args in (["--batch", "0"], ["--workers", "x"]):
        out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json", *args)
        assert out.returncode == 2
        report = last_json(out.stdout)
        assert report["exit_code"] == 2 and report["error"]
    out = cli("drain", "--redis", redis_url, "--json", env={"SYNCWD_DSN": ""})  # no DSN at all
    assert out.returncode == 2 and last_json(out.stdout)["exit_code"] == 2


@pytest.fixture
def read_only_dsn(db, base_dsn):
    name = "syncwd_ro_" + uuid.uuid4().hex[:8]
    db.execute(f"CREATE DATABASE {name}")
    dsn = f"{base_dsn} dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE p (id int PRIMARY KEY, v int)")
    # A standby after a failover, as PostgreSQL reports it: SQLSTATE 25006.
    db.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    yield dsn
    db.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_a_read_only_database_is_a_fault_with_the_report(r, redis_url, prefix, read_only_dsn):
    Syncwd(r, prefix=prefix).update_many(Table("p"), [{"id": i, "v": i} for i in range(10)])
    out = cli("drain", "--redis", redis_url, "--dsn", read_only_dsn, "--prefix", prefix, "--retries", "1", "--json")
    assert out.returncode == 3, out.stderr
    report = last_json(out.stdout)
    assert report["exit_code"] == 3 and "read-only" in report["aborted"] and report["dead_lettered"] == 0
    assert "Traceback" not in out.stderr


def test_redis_over_maxmemory_is_a_fault_with_the_report_then_resumes(db, dsn, schema, private_redis):
    r = redis_lib.Redis.from_url(private_redis.url)
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix="oom").update_many(t, [{"id": i, "v": i} for i in range(2000)])
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", str(int(r.info("memory")["used_memory"]) - 100_000))
    out = cli("drain", "--redis", private_redis.url, "--dsn", dsn, "--prefix", "oom", "--retries", "1", "--json")
    assert out.returncode == 3, out.stderr
    report = last_json(out.stdout)
    assert report["exit_code"] == 3 and "OutOfMemoryError" in report["aborted"]
    r.config_set("maxmemory", "0")
    again = cli("drain", "--redis", private_redis.url, "--dsn", dsn, "--prefix", "oom", "--json")
    assert again.returncode == 0 and count(db, t.name) == 2000


def test_schedule_exits_with_the_worst_code_of_its_runs(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1, "v": -1}, {"id": 2, "v": 2}])
    common = ["schedule", "--redis", redis_url, "--prefix", prefix, "--every", "100ms", "--max-runs", "2", "--json"]
    out = cli(*common, "--dsn", dsn)
    assert out.returncode == 1, out.stderr  # the first run dead-lettered, the second had nothing to do
    assert [line["exit_code"] for line in map(last_json, out.stdout.splitlines())] == [1, 0]
    # Every run aborts: PostgreSQL is unreachable.
    out = cli(*common, "--retries", "0", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=1")
    assert out.returncode == 3, out.stderr


# --- counts ----------------------------------------------------------------------


def test_rows_not_written_are_counted_skipped(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.k (id int PRIMARY KEY)")
    t = Table(f"{schema}.k")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i} for i in range(10)])
    assert FastDrainer(r, dsn, prefix=prefix).drain().upserted == 10
    sw.update_many(t, [{"id": i} for i in range(5, 15)])  # 5 rows are there already: nothing to write
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.skipped, report.exit_code) == (5, 5, 0)
    assert r.ttl(t.keys(0, prefix).value("7")) > 0  # durable all the same


def test_a_batch_merged_again_after_a_lost_ack_reply_is_counted_once(r, db, dsn, prefix, schema, monkeypatch):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(1000)])
    real, lost = scripts.ack, []

    def ack_without_reply(*args, **kwargs):
        result = real(*args, **kwargs)
        if not lost and args[5]:  # pops acked
            lost.append(1)
            raise redis_lib.exceptions.ConnectionError("the reply was lost")
        return result

    monkeypatch.setattr(scripts, "ack", ack_without_reply)
    report = FastDrainer(r, dsn, prefix=prefix, batch=300, retry_backoff=0.01).drain()
    assert lost and report.exit_code == 0
    assert report.upserted == 1000 == count(db, t.name)


def test_a_batch_acked_never_is_merged_again_and_counted_once(r, db, dsn, prefix, schema, monkeypatch):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(1000)])
    real, failed = scripts.ack, []

    def ack_that_fails_once(*args, **kwargs):
        if not failed and args[5]:
            failed.append(1)
            raise redis_lib.exceptions.ConnectionError("Redis went away before the ack")
        return real(*args, **kwargs)

    monkeypatch.setattr(scripts, "ack", ack_that_fails_once)
    report = FastDrainer(r, dsn, prefix=prefix, batch=300, retry_backoff=0.01).drain()
    assert failed and report.exit_code == 0 and report.upserted == 1000


def test_dead_letters_written_before_a_fault_are_counted(r, db, dsn, prefix, schema, monkeypatch):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": -1 if i < 3 else i} for i in range(100)])
    real, lost = scripts.dead, []

    def dead_without_reply(*args, **kwargs):
        result = real(*args, **kwargs)
        if not lost:
            lost.append(1)
            raise redis_lib.exceptions.TimeoutError("the reply was lost")
        return result

    monkeypatch.setattr(scripts, "dead", dead_without_reply)
    report = FastDrainer(r, dsn, prefix=prefix, retry_backoff=0.01).drain()
    assert lost and (report.dead_lettered, report.upserted, report.exit_code) == (3, 97, 1)


# --- nothing to do, and settings that lose data ------------------------------------


def test_the_wrong_redis_database_is_said(r, redis_url, dsn, prefix, schema, db):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY)")
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.p"), {"id": 1})
    wrong = redis_url.rsplit("/", 1)[0] + "/14"
    out = cli("drain", "--redis", wrong, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert any("nothing is registered under prefix" in w and "database 14" in w for w in report["warnings"])
    assert "nothing is registered under prefix" in out.stderr
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix + "x", "--json")
    assert "registries found under prefixes " in last_json(out.stdout)["warnings"][-1]  # ours among them


@pytest.mark.parametrize(
    "policy, warned", [("allkeys-lru", True), ("allkeys-lfu", True), ("noeviction", False), ("volatile-lru", False)]
)
def test_an_eviction_policy_that_loses_dirty_values_is_warned(dsn, private_redis, policy, warned):
    redis_lib.Redis.from_url(private_redis.url).config_set("maxmemory-policy", policy)
    out = cli("drain", "--redis", private_redis.url, "--dsn", dsn, "--json")
    assert out.returncode == 0, out.stderr
    assert ("maxmemory-policy" in out.stderr) is warned
    assert any(policy in w for w in last_json(out.stdout)["warnings"]) is warned
    status = cli("status", "--redis", private_redis.url, "--json")
    assert any("maxmemory-policy" in w for w in last_json(status.stdout)["warnings"]) is warned


def test_config_disabled_is_tolerated(dsn):
    try:
        server = RedisServer(extra_args=("--rename-command", "CONFIG", "")).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        out = cli("drain", "--redis", server.url, "--dsn", dsn, "--json")
        assert out.returncode == 0, out.stderr
        assert not any("maxmemory" in w for w in last_json(out.stdout)["warnings"])
    finally:
        server.close()


# --- the CLI's own claims ---------------------------------------------------------


def test_every_option_reads_one_documented_variable():
    import click

    from syncwd_fast.cli import main

    def commands(group, path=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    for path, command in commands(main):
        help_text = cli(*path, "--help").stdout
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            assert isinstance(param.envvar, str) and param.envvar.startswith("SYNCWD_"), (path, param.name)
            assert param.show_envvar and param.envvar in help_text, (path, param.name)


def test_syncwd_batch_is_read(r, redis_url, dsn, prefix):
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, env={"SYNCWD_BATCH": "0"})
    assert out.returncode == 2 and "--batch" in out.stderr and "SYNCWD_BATCH" not in out.stdout


def test_syncwd_table_and_lease_are_read(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY)")
    sw = Syncwd(r, prefix=prefix)
    sw.update(Table(f"{schema}.a"), {"id": 1})
    sw.update(Table(f"{schema}.b"), {"id": 1})
    env = {"SYNCWD_REDIS_URL": redis_url, "SYNCWD_DSN": dsn, "SYNCWD_PREFIX": prefix, "SYNCWD_JSON": "1"}
    out = cli("drain", env={**env, "SYNCWD_TABLE": f"{schema}.a", "SYNCWD_LEASE_SECONDS": "0.5"})
    assert out.returncode == 2 and "--lease-seconds" in out.stderr  # read, and refused below 1 s
    out = cli("drain", env={**env, "SYNCWD_TABLE": f"{schema}.a"})
    assert out.returncode == 0 and list(last_json(out.stdout)["tables"]) == [f"{schema}.a"]


def test_the_readme_synopsis_matches_the_commands():
    import re
    from pathlib import Path

    import click

    from syncwd_fast.cli import main

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## CLI", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    seen = 0
    for line in block.splitlines():
        words = line.split()
        if not words or words[0] != "syncwd-fast":
            continue
        command: click.Command = main
        for word in words[1:]:
            if isinstance(command, click.Group) and word in command.commands:
                command = command.commands[word]
        options = {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        written = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", line.split("#")[0]))
        if "[drain options]" in line:
            written |= {o for o in options if o in readme}
        assert written <= options, (line, written - options)
        seen += 1
    assert seen >= 6
    # the variables table lists every option's variable
    for command in [main.commands["drain"], main.commands["schedule"], main.commands["status"]]:
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                assert f"`{param.envvar}`" in readme, param.envvar


def test_status_json_fields_are_documented(r, redis_url, dsn, prefix, schema, db):
    """docs/operations.md names every field status --json prints, nested ones
    included, each in a row of its own table."""
    from pathlib import Path

    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY)")
    t = Table(f"{schema}.p", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(10)])
    FastDrainer(r, dsn, prefix=prefix).drain()  # a last run
    Syncwd(r, prefix=prefix).update(t, {"id": 1})
    r.set(t.keys(0, prefix).lease, "someone", px=30_000)  # a lease held
    r.hset(t.keys(0, prefix).meta, "run", "r1")  # an active run
    status = last_json(cli("status", "--redis", redis_url, "--prefix", prefix, "--json", "--partitions").stdout)
    docs = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    section = docs.split("## `status`: every field", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1] for line in section.splitlines() if line.startswith("| `")}
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row)}
    table = status["tables"][t.name]
    partition = table["per_partition"][0]
    objects = [status, table, table["active"], table["last_run"], partition, partition["active_run"]]
    objects += [partition["lease"], partition["last_run"]]
    for obj in objects:
        assert obj is not None
        for field in obj:
            assert field in documented, field


@pytest.fixture(autouse=True)
def _no_leftover_signals():
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.pop("SYNCWD_JSON", None)


# --- a second review: signals outside the batch loop, configuration said right ------


def test_a_signal_during_the_lease_watch_is_an_interruption(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.w (id int PRIMARY KEY)")
    t = Table(f"{schema}.w")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(100)])
    r.set(t.keys(0, prefix).lease, "a-dead-drainer", px=30_000)  # nobody renews it

    # Watching the dead drainer's lease: a client whose last command is the
    # watch's last (the lease's TTL, then who holds it: _wait_for_lease), not a
    # fixed wait: a busy machine may take seconds to start the drain.
    def watching() -> bool:
        return any(c.get("cmd") in ("pttl", "hmget") for c in r.client_list())

    command = [*drain_command(redis_url, dsn, prefix), "--json"]
    code, stdout, stderr, _ = interrupt(command, watching, signal.SIGINT)
    report = last_json(stdout)
    assert code == 4 and report["interrupted"] == "SIGINT", stderr
    assert report["tables"][t.name]["busy"] == []  # not busy: nobody live holds it


def test_a_signal_during_a_retry_is_an_interruption(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.l (id int PRIMARY KEY)")
    t = Table(f"{schema}.l")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(100)])
    with psycopg.connect(dsn) as app:
        app.execute(f"LOCK TABLE {t.name} IN ACCESS EXCLUSIVE MODE")  # every merge waits, then times out
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'syncwd-fast'"
        )
        command = [*drain_command(redis_url, dsn, prefix, "--lease-seconds", "1"), "--json"]
        code, stdout, stderr, _ = interrupt(command, lambda: db.execute(waiting).fetchone()[0] > 0, signal.SIGTERM)
    report = last_json(stdout)
    assert code == 4 and report["interrupted"] == "SIGTERM", stderr
    assert report["upserted"] == 0 and count(db, t.name) == 0
    assert FastDrainer(r, dsn, prefix=prefix).drain().upserted == 100


def test_a_second_signal_after_the_first_stop_still_ends_with_the_report(r, db, redis_url, dsn, prefix, big):
    command = drain_command(redis_url, dsn, prefix, "--batch", "200", "--json")
    ready = lambda: count(db, big.name) >= 2000  # noqa: E731
    code, stdout, stderr, _ = interrupt(command, ready, signal.SIGINT, signal.SIGINT, gap=0.08)
    assert code == 4, stderr
    assert last_json(stdout)["exit_code"] == 4


def test_a_redis_database_the_server_lacks_is_a_configuration_error(redis_url, dsn):
    out = cli("drain", "--redis", redis_url.rsplit("/", 1)[0] + "/99", "--dsn", dsn, "--json")
    assert out.returncode == 2 and "DB index is out of range" in last_json(out.stdout)["error"]
    assert "Traceback" not in out.stderr


def test_status_json_shows_the_other_tables_beside_an_invalid_entry(r, redis_url, prefix, schema, db):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY)")
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.p"), {"id": 1})
    r.hset(f"{prefix}:tables", "weird name", b'{"partitions": 1, "key": ["id"]}')
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    status = last_json(out.stdout)
    assert list(status["tables"]) == [f"{schema}.p"] and any("weird name" in w for w in status["warnings"])
    r.delete(f"{prefix}:tables")
    r.set(f"{prefix}:tables", "not a hash")
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json")
    assert out.returncode == 3 and "WRONGTYPE" in last_json(out.stdout)["error"]


def test_syncwd_json_is_read_as_click_reads_a_flag(redis_url, dsn):
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--batch", "0", env={"SYNCWD_JSON": "y"})
    assert out.returncode == 2 and last_json(out.stdout)["exit_code"] == 2


def test_dead_letter_retry_with_a_bad_dsn_marks_nothing_and_reports(r, redis_url, dsn, prefix, schema, db):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "v": -1})
    assert FastDrainer(r, dsn, prefix=prefix).drain().dead_lettered == 1
    out = cli("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--dsn", "host='oops", "--json")
    assert out.returncode == 2 and last_json(out.stdout)["exit_code"] == 2
    assert r.scard(t.keys(0, prefix).dirty) == 0  # nothing marked dirty again
