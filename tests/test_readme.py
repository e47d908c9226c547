"""The README's Python quick start runs as pasted: against a throwaway
redis-server and a database of its own (it writes the default prefix and
creates game.player_progress, so it gets servers no other test uses)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start() -> str:
    text = README.read_text()
    section = text.split("## Python quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the quick start has no python block"
    return match.group(1)


def test_the_python_quick_start_runs_as_pasted(private_redis: Any, base_dsn: str) -> None:
    database = "syncwd_qs_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE DATABASE {database}")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role may not create a database")
    dsn = make_conninfo(**{**conninfo_to_dict(base_dsn), "dbname": database})
    try:
        env = {"SYNCWD_DSN": dsn, "SYNCWD_REDIS_URL": private_redis.url, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [sys.executable, "-c", quick_start()], capture_output=True, text=True, timeout=120, env=env, check=False
        )
        assert out.returncode == 0, out.stderr
        got, report = out.stdout.splitlines()[-2:]
        assert got == "{'user_id': 8, 'level': 1, 'score': 80}"
        upserted, deleted, dead, _, exit_code = report.split()
        assert (upserted, deleted, dead, exit_code) == ("999", "1", "0", "0")
        with psycopg.connect(dsn) as db:
            assert db.execute("SELECT count(*), sum(score) FROM game.player_progress").fetchone() == (
                999,
                10 * (499500 - 7),
            )
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
