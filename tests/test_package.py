"""The package as a user receives it: a licence, types (py.typed), metadata
that says what it is, an sdist that carries its tests with their conftest
and helpers; and FastDrainer as a context manager."""

from __future__ import annotations

import configparser
import subprocess
import sys
import tarfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.sinks import Batch

from .sinks_for_tests import DictSink

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_says_it_is_typed_and_licensed() -> None:
    assert files("syncwd_fast").joinpath("py.typed").is_file()
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    classifiers = cfg["metadata"]["classifiers"]
    assert "Typing :: Typed" in classifiers and "License :: OSI Approved :: MIT License" in classifiers
    assert cfg["metadata"]["license_files"].strip() == "LICENSE"
    assert "py.typed" in cfg["options.package_data"]["syncwd_fast"]
    assert "https://" in cfg["metadata"]["project_urls"]


def test_the_version_is_the_changelogs_newest() -> None:
    """A version bump comes with its CHANGELOG entry, and the installed
    metadata says the same version as the package."""
    from importlib.metadata import version

    import syncwd_fast

    newest = next(line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## "))
    assert syncwd_fast.__version__ in newest
    assert version("syncwd-fast") == syncwd_fast.__version__


def test_the_sdist_carries_the_licence_the_types_the_c_sources_and_the_tests(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={"SYNCWD_FAST_NO_EXTENSIONS": "1", "PATH": "/usr/bin:/bin"},
    )
    (archive,) = tmp_path.glob("syncwd-fast-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {
        "LICENSE",
        "CHANGELOG.md",
        "syncwd_fast/py.typed",
        "syncwd_fast/csrc/wire.c",
        "syncwd_fast/csrc/buffer.h",
        "lua/pop.lua",
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/proxy.py",
        "tests/test_package.py",
    }
    assert expected <= names, expected - names
    assert not [n for n in names if n.endswith((".so", ".pyc")) or n.startswith("bench/results/")]


class ClosingSink(DictSink):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_fastdrainer_is_a_context_manager_that_closes_what_it_opened(r: Any, prefix: str) -> None:
    table = Table("ctx.rows")
    Syncwd(r, prefix=prefix).update_many(table, [{"id": i, "v": i} for i in range(10)])
    sink = ClosingSink()
    with FastDrainer(r, "", sinks={"ctx.rows": sink}, prefix=prefix, retries=0) as drainer:
        assert isinstance(drainer, FastDrainer)
        report = drainer.drain()
    assert report.upserted == 10 and len(sink.rows) == 10
    assert sink.closed == 1  # closed once: by the drain's end, not again on leaving the block

    def explode(batch: Batch) -> None:
        raise KeyboardInterrupt  # not the sink's error to judge: it leaves the block

    Syncwd(r, prefix=prefix).update(table, {"id": 1, "v": 2})
    sink = ClosingSink()
    sink.before_commit = explode
    drainer = FastDrainer(r, "", sinks={"ctx.rows": sink}, prefix=prefix, retries=0)
    with pytest.raises(KeyboardInterrupt), drainer as entered:
        entered.drain()
    assert sink.closed == 1


def test_an_asyncio_client_is_refused_at_once_with_what_to_do(redis_url: str) -> None:
    import redis.asyncio

    from syncwd_fast.errors import ConfigurationError

    client = redis.asyncio.Redis.from_url(redis_url)
    for make in (lambda: Syncwd(client), lambda: FastDrainer(client, "dbname=x")):
        with pytest.raises(ConfigurationError, match=r"synchronous Redis client .*redis\.asyncio.*asyncio\.to_thread"):
            make()
