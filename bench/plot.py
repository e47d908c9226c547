"""PNG charts of a bench result: throughput vs batch size, throughput vs
record count, drain RSS vs record count, and the main run's rates.

Also usable on a saved result: ``python -m bench.plot bench/results/bench-....json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def require() -> None:
    """Fail before a long run, not after it, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install -e '.[bench]' (or ./run bench ...)") from None


def _pyplot() -> Any:
    require()
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _by_width(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        out.setdefault(p["width"], []).append(p)
    return out


def _lines(plt: Any, points: list[dict[str, Any]], x: str, ys: list[str], xlabel: str, ylabel: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for width, pts in _by_width(points).items():
        pts = sorted(pts, key=lambda p: p[x])
        for y in ys:
            if all(y in p for p in pts):
                ax.plot([p[x] for p in pts], [p[y] for p in pts], marker="o", label=f"{width} {y}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rates(plt: Any, widths: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    every = ["write_naive", "write_limit", "write_bulk", "update_many", "naive", "limit", "drain"]
    phases = [p for p in every if all(p in r["rates"] for r in widths.values())]  # extras only with --extras
    step = 0.8 / max(len(widths), 1)
    for i, (width, r) in enumerate(widths.items()):
        ax.bar([n + i * step for n in range(len(phases))], [r["rates"][p] for p in phases], step, label=width)
    ax.set_xticks([n + step * (len(widths) - 1) / 2 for n in range(len(phases))], phases)
    ax.set_yscale("log")
    ax.set_ylabel("records/s (log)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(doc: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Every chart the result has data for; returns the files written."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if doc.get("widths"):
        paths.append(_rates(plt, doc["widths"], out_dir / f"{stem}-rates.png"))
    sweeps = doc.get("sweeps", {})
    if sweeps.get("batch"):
        paths.append(
            _lines(
                plt, sweeps["batch"], "batch", ["limit", "drain"], "batch size", "rows/s", out_dir / f"{stem}-batch.png"
            )
        )
    if sweeps.get("records"):
        paths.append(
            _lines(
                plt, sweeps["records"], "records", ["drain"], "records", "drain rows/s", out_dir / f"{stem}-records.png"
            )
        )
        paths.append(
            _lines(
                plt,
                sweeps["records"],
                "records",
                ["peak_rss_mb"],
                "records",
                "drain peak RSS (MB)",
                out_dir / f"{stem}-rss.png",
            )
        )
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.plot RESULT.json")
    source = Path(sys.argv[1])
    for written in draw(orjson.loads(source.read_bytes()), source.parent, source.stem):
        print(written)
