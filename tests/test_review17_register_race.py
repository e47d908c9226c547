"""Review of cc4140a (Syncwd.register refuses a table registered with other
options). Its check was HGET then, separately, HSET: two writers registering
the same table with different options at the same time both read "nothing
registered", neither was refused, and the last HSET silently won. Now the
look and the write are one script (lua/register.lua). The interleaving is made
deterministic: writer B registers right before writer A's own register call
reaches Redis; A must then be refused, and the registry keep B's entry."""

from __future__ import annotations

from typing import Any

import pytest
import redis as redis_lib

from syncwd_fast import Syncwd, Table, scripts
from syncwd_fast.errors import ConfigurationError
from syncwd_fast.keys import registry_key


def test_two_writers_registering_other_options_at_once_one_is_refused(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = Table("rr_items", version_column="version")
    unguarded = Table("rr_items")
    a_client = redis_lib.Redis.from_url(redis_url)
    b_client = redis_lib.Redis.from_url(redis_url)
    a, b = Syncwd(a_client, prefix=prefix), Syncwd(b_client, prefix=prefix)
    real_call = scripts.call
    pending = [lambda: b.register(unguarded)]

    def call(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        if name == "register" and client is a_client and pending:
            pending.pop()()  # B gets in first, between A's decision to register and its script
        return real_call(client, name, keys, args)

    monkeypatch.setattr(scripts, "call", call)
    try:
        with pytest.raises(
            ConfigurationError, match="version_column=None.*this writer has it as.*version_column=version"
        ):
            a.register(guarded)
        assert not pending  # B did register in between
        assert Table.from_registry("rr_items", b_client.hget(registry_key(prefix), "rr_items")) == unguarded
    finally:
        a_client.close()
        b_client.close()
