"""P:layout: writers and drainers of versions that disagree on the Redis key
layout never share a prefix. A writer records the layout on a new prefix;
both refuse another one at once with a message that says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table
from syncwd_fast.layout import LAYOUT, layout_key

from .helpers import cli, last_json


def test_a_writer_records_the_layout_and_a_prefix_of_another_is_refused(
    r: Any, redis_url: str, dsn: str, prefix: str
) -> None:
    t = Table("lay.t")
    Syncwd(r, prefix=prefix).update(t, {"id": 1})
    assert r.get(layout_key(prefix)) == str(LAYOUT).encode()

    r.set(layout_key(prefix), LAYOUT + 1)  # a newer version wrote this prefix
    with pytest.raises(ConfigurationError, match=rf"holds Redis key layout {LAYOUT + 1}; this syncwd-fast"):
        Syncwd(r, prefix=prefix).update(t, {"id": 2})
    assert not r.exists(t.keys(0, prefix).value("2"))
    with pytest.raises(ConfigurationError, match="key layout"):
        FastDrainer(r, dsn, prefix=prefix).drain()
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 2 and "key layout" in last_json(out.stdout)["error"]


def test_a_prefix_written_before_the_key_existed_is_read_as_layout_1(
    r: Any, dsn: str, prefix: str, db: Any, schema: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.old (id int PRIMARY KEY)")
    t = Table(f"{schema}.old")
    Syncwd(r, prefix=prefix).update(t, {"id": 1})
    r.delete(layout_key(prefix))  # as an older writer left it
    assert FastDrainer(r, dsn, prefix=prefix).drain().upserted == 1
