"""Review of 92cb5db (P:layout). A P:layout key that is not a string (garbage
of another type, e.g. a list some other program left under the prefix) is not
refused as another layout (ConfigurationError, exit 2) as a garbage string is:
the writer raises a raw redis ResponseError (WRONGTYPE) and the drain aborts
as an 'unexpected' fault, exit 3, which a scheduler treats as transient and
retries forever."""

from __future__ import annotations

from typing import Any

import pytest

from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table
from syncwd_fast.layout import layout_key

from .helpers import cli, last_json


def test_a_layout_key_of_another_type_is_a_configuration_error_for_the_writer(r: Any, prefix: str) -> None:
    r.rpush(layout_key(prefix), "1")
    with pytest.raises(ConfigurationError):  # observed: redis.exceptions.ResponseError WRONGTYPE
        Syncwd(r, prefix=prefix).update(Table("lay17.t"), {"id": 1})


def test_a_layout_key_of_another_type_is_exit_2_for_the_drain(r: Any, redis_url: str, dsn: str, prefix: str) -> None:
    r.rpush(layout_key(prefix), "1")
    with pytest.raises(ConfigurationError):  # observed: drain() returns aborted='unexpected ResponseError ...'
        FastDrainer(r, dsn, prefix=prefix, retries=0).drain()
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 2, (out.returncode, last_json(out.stdout))  # observed: 3
