"""The bench runs end to end at a tiny size and writes a complete result."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
RATES = ("write_naive", "write_limit", "update_many", "naive", "limit", "drain")
RATIOS = ("drain_over_limit", "drain_over_naive", "update_many_over_write_limit")


def test_bench_smoke(redis_url: str, base_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    namespace = "bt" + uuid.uuid4().hex[:10]  # its own key prefix and schema, removed by the bench
    args = ["--records", "3000", "--updates", "2", "--batch", "500", "--naive-sample", "300", "--width", "both"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--namespace", namespace, "--json-out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYNCWD_REDIS_URL": redis_url, "SYNCWD_DSN": base_dsn},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = orjson.loads(out.read_bytes())
    assert set(doc["widths"]) == {"narrow", "wide"}
    for width, result in doc["widths"].items():
        for rate in RATES:
            assert result["rates"][rate] > 0, (width, rate)
        assert result["drain"]["report"]["upserted"] == 3000, width
        assert result["drain"]["exit_code"] == 0, width
        for ratio in RATIOS:
            assert result["ratios"][ratio] is not None and result["ratios"][ratio] > 0, (width, ratio)
        assert result["drain"]["peak_rss_mb"] > 0
    for fact in ("cpu_count", "python", "redis", "postgres", "date"):
        assert doc["machine"][fact], fact
    assert "narrow:" in done.stdout and "drain/limit" in done.stdout
