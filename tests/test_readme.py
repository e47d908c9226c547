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


def _commands() -> dict[str, Any]:
    """Each command of the CLI by its name as typed ("dead-letter list"), and "" for the group."""
    import click

    from syncwd_fast.cli import main

    out: dict[str, Any] = {"": main}
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            out.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            out[name] = command
    return out


def _options(command: Any, secondary: bool = False) -> set[str]:
    """A command's long options; with ``secondary``, the off switches of flag pairs (--no-cluster) too."""
    import click

    params = [p for p in command.params if isinstance(p, click.Option)]
    names = [o for p in params for o in [*p.opts, *(p.secondary_opts if secondary else [])]]
    return {o for o in names if o.startswith("--")}


def test_the_readme_cli_synopsis_matches_the_commands() -> None:
    """Every option the synopsis shows exists, and every option of a command is
    in its synopsis line (schedule's drain options by "[drain options]")."""
    text = README.read_text()
    block = text.split("## CLI", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line.startswith("syncwd-fast "):
            words = line.split()[1:]
            name = (
                " ".join(words[:2])
                if words[0] in ("dead-letter", "tables")
                else ("" if words[0].startswith("[") else words[0])
            )
            current = name
            lines[current] = line.split("#", 1)[0]
        elif current is not None and line.startswith(" "):
            lines[current] += " " + line.split("#", 1)[0]
    commands = _commands()
    assert set(lines) == set(commands), set(lines) ^ set(commands)
    drain_options = _options(commands["drain"])
    # The Sentinel options go with --redis: said once, in the block's comment.
    sentinel = {"--sentinel", "--service", "--sentinel-password"}
    assert sentinel <= set(re.findall(r"--[a-z][a-z-]*", block))
    for name, line in lines.items():
        shown = set(re.findall(r"--[a-z][a-z-]*", line))
        have = _options(commands[name]) - {"--help", "--version"}
        assert shown <= _options(commands[name], secondary=True) | {"--every", "--cron"}, (name, shown - have)
        missing = have - shown - (drain_options if "[drain options]" in line else set())
        missing -= sentinel if "--redis" in line else set()
        assert not missing, (name, missing)


def test_the_readme_names_every_environment_variable() -> None:
    text = README.read_text()
    variables = {p.envvar for command in _commands().values() for p in command.params if getattr(p, "envvar", None)}
    missing = sorted(v for v in variables if f"`{v}`" not in text)
    assert not missing, missing
