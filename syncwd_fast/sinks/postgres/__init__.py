"""The built-in PostgreSQL sink: today's COPY merge (merge.py), its decoder
and renderer (decode.py, render.py, the C speedup) and the catalog reading
(schema.py)."""

from .sink import PostgresSink, lock_key

__all__ = ["PostgresSink", "lock_key"]
