"""The syncwd-fast command, run as a subprocess the way users run it."""

import pathlib

import pytest
from click.testing import CliRunner

from syncwd_fast import Syncwd, Table
from syncwd_fast.cli import main

from .helpers import cli, count, last_json

README = pathlib.Path(__file__).parent.parent / "README.md"


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, score int CHECK (score >= 0))")
    return Table(f"{schema}.p", partitions=2)


def test_drain_json_report_and_exit_0(r, db, redis_url, dsn, prefix, t):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "score": i} for i in range(500)])
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "100", "--json")
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert (report["upserted"], report["deleted"], report["dead_lettered"]) == (500, 0, 0)
    assert report["seconds"] > 0 and report["tables"][t.name]["upserted"] == 500
    assert count(db, t.name) == 500


def test_options_from_environment_and_human_summary(r, redis_url, dsn, prefix, t):
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "score": 1})
    out = cli("drain", env={"SYNCWD_REDIS_URL": redis_url, "SYNCWD_DSN": dsn, "SYNCWD_PREFIX": prefix})
    assert out.returncode == 0, out.stderr
    assert "1 upserted, 0 deleted, 0 dead-lettered" in out.stdout


def test_exit_1_with_dead_letters(r, redis_url, dsn, prefix, t):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1, "score": 1}, {"id": 2, "score": -1}])
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 1
    assert last_json(out.stdout)["dead_lettered"] == 1


def test_exit_1_with_a_table_missing_in_postgresql(r, redis_url, dsn, prefix, schema):
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.absent"), {"id": 1})
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 1
    assert "does not exist" in last_json(out.stdout)["tables"][f"{schema}.absent"]["error"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "0"], "batch"),
        (["--pop", "0"], "--pop"),
        (["--table", "bad;name"], "invalid table name"),
        (["--table", "never_written"], "not registered"),
        (["--prefix", "a b"], "invalid key prefix"),
    ],
)
def test_exit_2_on_usage_errors(redis_url, dsn, prefix, args, message):
    argv = ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, *args]
    if "--prefix" in args:
        argv = ["drain", "--redis", redis_url, "--dsn", dsn, *args]
    out = cli(*argv)
    assert out.returncode == 2, out
    assert message in out.stderr


def test_pop_sets_the_ids_of_each_redis_call(r, db, redis_url, dsn, prefix, t, monkeypatch):
    """--pop (SYNCWD_POP) reaches every pop of the drain, and its acks."""
    from syncwd_fast import FastDrainer, scripts

    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "score": i} for i in range(300)])
    counts = []
    pop_batch = scripts.pop_batch

    def spy(client, keys, run, token, count, *args, **kwargs):
        counts.append(count)
        return pop_batch(client, keys, run, token, count, *args, **kwargs)

    monkeypatch.setattr(scripts, "pop_batch", spy)
    argv = ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "100", "--json"]
    done = CliRunner().invoke(main, argv, env={"SYNCWD_POP": "9"})
    assert done.exit_code == 0, done.output
    assert count(db, t.name) == 300
    assert counts and set(counts) == {9}
    options = FastDrainer(r, dsn, prefix=prefix, pop=9).options
    assert (options.pop, options.ack) == (9, 9)
    default = FastDrainer(r, dsn, prefix=prefix).options
    assert (default.pop, default.ack) == (125, 125)
    assert FastDrainer(r, dsn, prefix=prefix, pop=500).options.ack == 500


def test_exit_2_without_a_dsn(redis_url):
    out = cli("drain", "--redis", redis_url, env={"SYNCWD_DSN": ""})
    assert out.returncode == 2 and "--dsn" in out.stderr


def test_cluster_flag_on_a_plain_server_is_a_usage_error(r, redis_url, dsn, prefix):
    if r.info("server").get("redis_mode") == "cluster":
        pytest.skip("the test Redis is a cluster")
    node = redis_url.rsplit("/", 1)[0] + "/0"  # a cluster URL names database 0
    for args in (("status",), ("dead-letter", "list"), ("drain", "--dsn", dsn, "--json")):
        out = cli(*args, "--redis", node, "--prefix", prefix, "--cluster")
        assert out.returncode == 2, (args, out.stderr)
        assert "names a Redis that is no cluster node" in out.stderr and "unexpected" not in out.stderr
    assert last_json(out.stdout)["exit_code"] == 2
    out = cli("status", "--redis", node.rsplit("/", 1)[0] + "/3", "--prefix", prefix, "--cluster")
    assert out.returncode == 2 and "a cluster has database 0 only" in out.stderr


def test_exit_3_when_redis_is_unreachable(dsn):
    from syncwd_fast.servers import free_port

    out = cli("drain", "--redis", f"redis://127.0.0.1:{free_port()}/0", "--dsn", dsn, "--retries", "1", "--json")
    assert out.returncode == 3, out
    assert "ConnectionError" in last_json(out.stdout)["aborted"]
    # Each retry is said as it happens, with what failed: no long silence before exit 3.
    assert "ConnectionError" in out.stderr and "retry 1 of 1 in 0.5 s" in out.stderr


def test_status(r, redis_url, prefix, t):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(7)])
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json")
    assert out.returncode == 0
    assert last_json(out.stdout)["tables"][t.name]["dirty"] == 7
    out = cli("status", "--redis", redis_url, "--prefix", prefix)
    assert f"{t.name}: 7 dirty, 0 in a run, 0 in flight, 0 dead" in out.stdout


def test_python_m_and_console_script_agree():
    out = cli("--help")
    assert out.returncode == 0 and "drain" in out.stdout


def test_every_command_has_help_and_is_in_the_readme():
    runner = CliRunner()
    readme = README.read_text()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and command.help, name
        if hasattr(command, "commands"):
            continue
        assert f"syncwd-fast {name}" in readme, f"README does not show `syncwd-fast {name}`"


def test_demo_runs_end_to_end(redis_url, dsn, db, prefix):
    namespace = prefix  # the demo resets its own schema and prefix; this test's are unique
    out = cli(
        "demo",
        "--records",
        "2000",
        "--updates",
        "10000",
        "--batch",
        "500",
        "--namespace",
        namespace,
        env={"SYNCWD_REDIS_URL": redis_url, "SYNCWD_DSN": dsn},
    )
    db.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "checked: all 2,000 rows hold their latest value" in out.stdout
    # It names the database it used (host:port/dbname), never a password.
    import psycopg.conninfo

    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    assert f"/{parts.get('dbname') or parts.get('user') or 'default'}" in out.stdout.splitlines()[0]
    assert "local/given" not in out.stdout


def test_the_demo_names_a_database_without_its_password():
    from syncwd_fast.demo import _where

    assert _where("postgresql://app:s3cret@db.internal:6432/game") == "db.internal:6432/game"
    assert _where("host=10.0.0.5 dbname=app password=s3cret") == "10.0.0.5:5432/app"
    assert _where("dbname=app") == "local socket:5432/app"
