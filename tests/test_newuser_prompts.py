"""The confirmation prompts of `tables remove` and `dead-letter purge`, as a script or cron job meets them."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from syncwd_fast import Syncwd, Table
from syncwd_fast.cli import main
from syncwd_fast.keys import registry_key

from .helpers import cli


def test_a_prompt_without_an_answer_is_a_usage_error_not_exit_1(r, redis_url, prefix):
    # No input (stdin closed, as under cron): exit 2 saying to give --yes, never click's "Aborted!" and exit 1,
    # a code these commands do not use; nothing is changed.
    table = Table("nu_prompt", partitions=2)
    Syncwd(r, prefix=prefix).update(table, {"id": 1, "v": 1})
    base = ["--redis", redis_url, "--prefix", prefix]
    for args in (["tables", "remove", table.name, "--force"], ["dead-letter", "purge"]):
        out = cli(*args, *base, input="")
        assert out.returncode == 2, (args, out)
        assert "--yes" in out.stderr and "Aborted!" not in out.stderr, (args, out.stderr)
    assert r.hexists(registry_key(prefix), table.name)

    done = CliRunner().invoke(main, ["tables", "remove", table.name, *base, "--force"], input="")
    assert done.exit_code == 2 and "--yes" in done.output, done.output


def test_tables_remove_json_prompts_on_stderr(r, redis_url, prefix):
    # --json promises one JSON object on stdout; the question goes to stderr.
    table = Table("nu_prompt_json", partitions=2)
    Syncwd(r, prefix=prefix).update(table, {"id": 1, "v": 1})
    out = cli(
        "tables", "remove", table.name, "--redis", redis_url, "--prefix", prefix, "--force", "--json", input="y\n"
    )
    assert out.returncode == 0, out.stderr
    assert "Remove table" in out.stderr
    removed = orjson.loads(out.stdout)  # the whole of stdout: the JSON object alone
    assert removed["table"] == table.name and removed["dirty"] == 1
