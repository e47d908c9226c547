"""Identifiers only through validation and psycopg.sql; no password ever
printed; TLS settings pass through untouched."""

import orjson
import pytest
from psycopg.conninfo import conninfo_to_dict

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.connection import conninfo, redis_from_url
from syncwd_fast.keys import registry_key
from syncwd_fast.masking import Masker, mask
from syncwd_fast.servers import free_port

from .helpers import cli, count

SECRET = "s3cr3t-Pa55"


def test_mask_patterns():
    assert mask(f"redis://user:{SECRET}@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask(f"postgresql://app:{SECRET}@db/app") == "postgresql://app:***@db/app"
    assert mask(f"host=db password={SECRET} dbname=x") == "host=db password=*** dbname=x"
    assert mask(f"host=db password='{SECRET} with space' dbname=x") == "host=db password=*** dbname=x"
    m = Masker()
    m.add(f"host=db password={SECRET}", f"rediss://:{SECRET}x@h/0")
    assert SECRET not in m(f"failed near {SECRET} and {SECRET}x")


REDIS = "<the tests' Redis>"  # replaced by the redis_url fixture's URL


@pytest.mark.parametrize(
    "args",
    [
        ["--redis", f"redis://default:{SECRET}@127.0.0.1:{free_port()}/0", "--dsn", "dbname=x"],  # Redis down
        ["--redis", REDIS, "--dsn", f"host=127.0.0.1 port={free_port()} password={SECRET}"],
        ["--redis", REDIS, "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/x"],
        ["--redis", REDIS, "--dsn", f"host=127.0.0.1 password={SECRET} garbage"],  # malformed
    ],
)
def test_no_password_in_any_output(r, redis_url, prefix, schema, db, args):
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.p"), {"id": 1})
    args = [redis_url if a == REDIS else a for a in args]  # the tests' Redis (SYNCWD_TEST_REDIS_URL)
    for extra in ([], ["--json"]):
        out = cli("drain", *args, "--prefix", prefix, "--retries", "0", *extra)
        assert out.returncode in (2, 3), out
        assert SECRET not in out.stdout + out.stderr
        assert out.stdout.strip() or out.stderr.strip()  # it does say what went wrong


def test_a_malformed_dsn_is_a_usage_error(r, redis_url, prefix, schema):
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.p"), {"id": 1})
    out = cli("drain", "--redis", redis_url, "--prefix", prefix, "--dsn", "host=x garbage")
    assert out.returncode == 2 and "invalid PostgreSQL DSN" in out.stderr


def test_sslmode_and_tls_settings_pass_through():
    dsn = "host=db.example dbname=app sslmode=verify-full sslrootcert=/etc/ca.pem password=pw connect_timeout=3"
    final = conninfo_to_dict(conninfo(dsn))
    assert final["sslmode"] == "verify-full" and final["sslrootcert"] == "/etc/ca.pem"
    assert final["password"] == "pw" and final["connect_timeout"] == "3"  # the DSN's own values win
    assert final["keepalives"] == "1" and "tcp_user_timeout" in final


def test_rediss_urls_pass_through():
    client = redis_from_url("rediss://:pw@cache.example:6380/2?ssl_cert_reqs=required")
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("cache.example", 6380, 2, "pw")
    assert kwargs["ssl_cert_reqs"] == "required"


def test_a_hostile_name_in_the_registry_is_refused(r, redis_url, dsn, prefix):
    r.hset(registry_key(prefix), 'x"; DROP TABLE y; --', orjson.dumps({"partitions": 1, "key": ["id"]}))
    with pytest.raises(ValueError, match="invalid table name"):
        FastDrainer(r, dsn, prefix=prefix).drain()
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix)
    assert out.returncode == 2 and "invalid table name" in out.stderr


def test_a_hostile_key_column_is_refused(r, prefix):
    r.hset(registry_key(prefix), "t", orjson.dumps({"partitions": 1, "key": ["id); DROP TABLE t; --"]}))
    with pytest.raises(ValueError, match="key column"):
        FastDrainer(r, "dbname=x", prefix=prefix).drain()


def test_quoted_identifiers_reach_postgresql_intact(r, db, dsn, prefix, schema):
    db.execute(f'CREATE TABLE {schema}."Mixed Case" ("Id" int PRIMARY KEY, "select" text)')
    # Not a plain identifier: refused on the write side before anything reaches SQL.
    with pytest.raises(ValueError):
        Table(f"{schema}.Mixed Case")
    db.execute(f'CREATE TABLE {schema}."CamelCase" ("Id" int PRIMARY KEY, "select" text)')
    t = Table(f"{schema}.CamelCase", key="Id")
    Syncwd(r, prefix=prefix).update(t, {"Id": 1, "select": "reserved word as a column"})
    assert FastDrainer(r, dsn, prefix=prefix).drain().upserted == 1
    assert count(db, f'{schema}."CamelCase"') == 1
