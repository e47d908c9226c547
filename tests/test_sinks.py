"""The sink contract, proven with sinks written as a team would write its
own (tests/sinks_for_tests.py): per-table choice, redelivery after a kill,
refused records, faults, fencing; and the CLI's --sink."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table, TableMissing
from syncwd_fast.sinks import Sink, builtin_sink

from .helpers import cli, count, dead_entries, dead_of, drain_command, in_flight, last_json
from .sinks_for_tests import DictSink


@pytest.fixture
def t():
    return Table("game.progress", key="user_id", partitions=2)


def write(r, prefix, t, n, start=0, **extra):
    Syncwd(r, prefix=prefix).update_many(t, [{"user_id": i, "level": i % 7, **extra} for i in range(start, start + n)])


def test_a_table_with_a_sink_of_its_own_goes_there_and_the_others_to_the_dsn(r, db, dsn, prefix, schema, t):
    db.execute(f"CREATE TABLE {schema}.other (id int PRIMARY KEY, v text)")
    other = Table(f"{schema}.other")
    write(r, prefix, t, 300)
    Syncwd(r, prefix=prefix).update_many(other, [{"id": i, "v": "x"} for i in range(50)])
    Syncwd(r, prefix=prefix).delete(t, 7)
    sink = DictSink()
    report = FastDrainer(r, dsn, prefix=prefix, sinks={"game.progress": sink}, batch=64).drain()
    assert (report.exit_code, report.upserted, report.deleted) == (0, 349, 1)
    assert len(sink.rows) == 299 and "7" not in sink.rows
    assert sink.rows["8"] == {"user_id": 8, "level": 1}
    assert count(db, other.name) == 50
    assert {p for _, p, _ in sink.batches} == {0, 1} and all(n <= 64 for _, _, n in sink.batches)
    # a missing key never clears a value; a delete then a write is a new row
    Syncwd(r, prefix=prefix).update(t, {"user_id": 8, "score": 5})
    Syncwd(r, prefix=prefix).update(t, {"user_id": 7, "score": 1})
    FastDrainer(r, "", prefix=prefix, sinks={"game.progress": sink}, tables=["game.progress"]).drain()
    assert sink.rows["8"] == {"user_id": 8, "level": 1, "score": 5}
    assert sink.rows["7"] == {"user_id": 7, "score": 1}


def test_refused_records_are_dead_lettered_and_the_rest_acked(r, prefix, t):
    write(r, prefix, t, 200)
    sink = DictSink(reject=lambda rec: "level 3 is closed" if rec.value["level"] == 3 else None)
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}).drain()
    refused = {str(i) for i in range(200) if i % 7 == 3}
    assert (report.upserted, report.dead_lettered, report.exit_code) == (200 - len(refused), len(refused), 1)
    dead = dead_of(r, t, prefix)
    assert set(dead) == refused and all(e["error"] == "level 3 is closed" for e in dead.values())
    assert not refused & set(sink.rows)
    # acked: a second drain has nothing to do, and nothing is in flight
    again = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}).drain()
    assert (again.upserted, again.dead_lettered, again.exit_code) == (0, 0, 0)


def test_a_record_the_sink_raises_on_is_dead_lettered_and_the_rest_lands(r, prefix, t):
    """The sink stage of 'no record can strand its partition': an exception
    that is no fault of the link is looked for in halves of the batch."""
    write(r, prefix, t, 500)
    sink = DictSink(explode=lambda rec: ValueError("cannot encode level") if rec.id in ("13", "401") else None)
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}).drain()
    assert (report.upserted, report.dead_lettered, report.exit_code) == (498, 2, 1)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {"13", "401"}
    assert dead["13"]["error"] == "the sink failed on this record: ValueError: cannot encode level"
    assert len(sink.rows) == 498 and "13" not in sink.rows


def test_a_sink_that_fails_on_every_record_is_a_fault_retried_then_exit_3(r, prefix, t):
    write(r, prefix, t, 40)
    broken = DictSink(explode=lambda rec: RuntimeError("a bug in the sink"))
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: broken}, retries=2, retry_backoff=0.01).drain()
    assert report.exit_code == 3 and report.dead_lettered == 0
    assert (
        "gave up after 2 retries" in report.aborted and "unexpected RuntimeError: a bug in the sink" in report.aborted
    )
    assert broken.rows == {}
    # nothing was acked: a working sink lands every record
    fixed = DictSink()
    assert FastDrainer(r, "", prefix=prefix, sinks={t.name: fixed}).drain().upserted == 40
    assert len(fixed.rows) == 40


def test_a_lone_record_the_sink_fails_on_is_dead_lettered_after_the_retries(r, prefix):
    """A batch of one record cannot tell a bad record from a broken sink. It
    is retried; on the last try it is refused, so it cannot come first in
    every later drain (its run adopted again and again) and hold the
    partition's newer records up."""
    t1 = Table("game.lone", key="user_id", partitions=1)
    write(r, prefix, t1, 1, start=66)
    sink = DictSink(explode=lambda rec: KeyError("no such level") if rec.id == "66" else None)
    report = FastDrainer(r, "", prefix=prefix, sinks={t1.name: sink}, retries=2, retry_backoff=0.01).drain()
    assert (report.exit_code, report.upserted, report.dead_lettered) == (1, 0, 1)
    entry = dead_entries(r, t1.keys(0, prefix))["66"]
    assert entry["error"] == "the sink failed on this record alone, 3 times: KeyError: 'no such level'"
    write(r, prefix, t1, 10)
    again = FastDrainer(r, "", prefix=prefix, sinks={t1.name: sink}).drain()
    assert (again.exit_code, again.upserted) == (0, 10) and len(sink.rows) == 10


def test_a_transient_sink_error_is_retried_not_pinned_on_records(r, prefix, t):
    write(r, prefix, t, 40)
    calls = []

    def flaky(rec):
        calls.append(rec.id)
        return ConnectionError("destination unreachable") if len(calls) <= 3 else None  # three failed tries

    sink = DictSink(explode=flaky)
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, retries=5, retry_backoff=0.01).drain()
    assert (report.exit_code, report.upserted, report.dead_lettered) == (0, 40, 0)
    down = DictSink(explode=lambda rec: ConnectionError("destination unreachable"))
    write(r, prefix, t, 10, start=100)
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: down}, retries=1, retry_backoff=0.01).drain()
    assert report.exit_code == 3 and "ConnectionError: destination unreachable" in report.aborted
    assert report.dead_lettered == 0 and not dead_of(r, t, prefix)


def test_a_sink_whose_lease_was_taken_over_cannot_commit(r, prefix, t):
    t1 = Table("game.one", key="user_id", partitions=1)
    write(r, prefix, t1, 30)
    keys = t1.keys(0, prefix)

    def steal(batch):
        r.set(keys.lease, "another-drainer", px=3000)  # taken over mid-write

    sink = DictSink(before_commit=steal)
    report = FastDrainer(r, "", prefix=prefix, sinks={t1.name: sink}, lease_seconds=1).drain()
    assert report.exit_code == 3 and "lease lost" in report.aborted
    assert sink.rows == {}  # nothing committed
    r.delete(keys.lease)
    good = DictSink()
    assert FastDrainer(r, "", prefix=prefix, sinks={t1.name: good}).drain().upserted == 30


def test_redelivery_after_a_kill_between_the_sink_and_the_ack_is_idempotent(redis_url, dsn, r, prefix, tmp_path):
    """kill -9 once the sink made a batch durable, before its ack: the next
    drain delivers the batch again and the sink ends the same."""
    t1 = Table("game.killed", key="user_id", partitions=1)
    write(r, prefix, t1, 1000)
    store = tmp_path / "sink.json"
    env = {**os.environ, "SYNCWD_TEST_SINK_FILE": str(store), "SYNCWD_TEST_SINK_KILL_AFTER": "1"}
    argv = drain_command(redis_url, dsn, prefix, "--batch", "300", "--lease-seconds", "2")
    argv += ["--sink", f"{t1.name}=tests.sinks_for_tests:file_sink"]
    killed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    first = json.loads(store.read_text())
    assert len(first["rows"]) == 300  # the first batch durable, its ack never sent
    run = r.hget(t1.keys(0, prefix).meta, "run").decode()
    assert set(first["rows"]) <= set(in_flight(r, t1.keys(0, prefix), run))
    env["SYNCWD_TEST_SINK_KILL_AFTER"] = "0"
    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["upserted"] == 1000
    state = json.loads(store.read_text())
    assert state["rows"] == {str(i): {"user_id": i, "level": i % 7} for i in range(1000)}
    again = {rid for rid, n in state["deliveries"].items() if n == 2}
    assert again == set(first["rows"]) and set(state["deliveries"].values()) == {1, 2}  # the unacked batch came again
    assert r.scard(t1.keys(0, prefix).dirty) == 0 and not r.hget(t1.keys(0, prefix).meta, "run")


def test_cli_sink_option_mistakes_are_configuration_errors(redis_url, prefix, r, t):
    write(r, prefix, t, 1)
    for spec, said in [
        ("game.progress", "TABLE=package.module:factory"),
        ("game.progress=tests.sinks_for_tests", "package.module:factory"),
        ("game.progress=tests.no_such_module:f", "cannot import the sink module"),
        ("game.progress=tests.sinks_for_tests:nope", "has no 'nope'"),
        ("game.progress=tests.sinks_for_tests:not_a_sink", "not a syncwd_fast.sinks.Sink"),
    ]:
        out = cli("drain", "--redis", redis_url, "--dsn", "dbname=x", "--prefix", prefix, "--sink", spec, "--json")
        assert out.returncode == 2, (spec, out.stderr)
        assert said in last_json(out.stdout)["error"], spec


def test_dsn_schemes_choose_the_built_in_sink():
    assert type(builtin_sink("dbname=app")).__name__ == "PostgresSink"
    assert type(builtin_sink("postgresql://u@h/app")).__name__ == "PostgresSink"
    with pytest.raises(ConfigurationError, match="unknown DSN scheme 'oracle'"):
        builtin_sink("oracle://scott@h/db")
    with pytest.raises(ConfigurationError, match="not a syncwd_fast.sinks.Sink"):
        FastDrainer(None, "", sinks={"t": object()})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="no sink for"):
        FastDrainer(None, "", sinks={"a": Sink()}).sink_for("b")


class Unwritable(DictSink):
    def check(self, table):
        raise TableMissing(table.name)


class Unreachable(DictSink):
    def open(self):
        raise ConfigurationError("the destination refused the login")


def test_a_table_its_sink_cannot_write_waits_while_the_others_drain(r, prefix, t):
    other = Table("game.other", key="user_id")
    write(r, prefix, t, 20)
    write(r, prefix, other, 5)
    fine = DictSink()
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: Unwritable(), other.name: fine}).drain()
    assert (report.exit_code, report.upserted) == (1, 5) and len(fine.rows) == 5
    assert "does not exist" in report.tables[t.name].error
    assert sum(r.scard(t.keys(n, prefix).dirty) for n in range(t.partitions)) == 20  # waiting in Redis
    with pytest.raises(ConfigurationError, match="refused the login"):  # exit 2 on the command line
        FastDrainer(r, "", prefix=prefix, sinks={t.name: Unreachable(), other.name: fine}).drain()
