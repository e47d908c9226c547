"""Keys of every type the stored JSON renders as a string (uuid, date,
timestamptz, time, numeric, str and int enums, floats), single and composite:
the writer, the drain and the dead-letter tools must all render the same id."""

from __future__ import annotations

import datetime
import enum
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest
from psycopg import sql

from syncwd_fast import FastDrainer, Syncwd, Table, rows
from syncwd_fast.deadletter import list_dead, retry_dead
from syncwd_fast.keys import canonical_id, json_default
from syncwd_fast.sinks.postgres.decode import DELETE, Decoder
from syncwd_fast.sinks.postgres.schema import TableSchema

from .helpers import count


class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    MID = 20
    HIGH = 300


U = [
    uuid.UUID("3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
    uuid.UUID("00000000-0000-4000-8000-000000000000"),
    uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff"),
]
UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))
D = datetime.date


@dataclass
class Kind:
    name: str
    columns: str  # DDL of the key columns
    key: tuple[str, ...]
    objects: list[Any]  # one key per record: the value, or a tuple for several columns
    texts: list[Any]  # the same keys as strings, as a caller holding only text would pass them
    ids: list[str]  # the record ids, written out by hand: what the key layout promises

    def values(self, i: int, texts: bool = False) -> tuple[Any, ...]:
        key = (self.texts if texts else self.objects)[i]
        return key if len(self.key) > 1 else (key,)

    def row(self, i: int, n: int) -> dict[str, Any]:
        return {**dict(zip(self.key, self.values(i))), "n": n}


KINDS = [
    Kind("uuid", "id uuid", ("id",), U, [str(u) for u in U], [str(u) for u in U]),
    Kind(
        "date",
        "id date",
        ("id",),
        [D(2024, 1, 1), D(2024, 2, 29), D(1999, 12, 31)],
        ["2024-01-01", "2024-02-29", "1999-12-31"],
        ["2024-01-01", "2024-02-29", "1999-12-31"],
    ),
    Kind(
        "timestamptz",
        "id timestamptz",
        ("id",),
        [
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
            datetime.datetime(2024, 6, 1, 12, 0, tzinfo=PLUS2),
        ],
        ["2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05.123456+00:00", "2024-06-01T12:00:00+02:00"],
        ["2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05.123456+00:00", "2024-06-01T12:00:00+02:00"],
    ),
    Kind(
        "time",
        "id time",
        ("id",),
        [datetime.time(0, 0), datetime.time(12, 30, 15), datetime.time(23, 59, 59, 500000)],
        ["00:00:00", "12:30:15", "23:59:59.500000"],
        ["00:00:00", "12:30:15", "23:59:59.500000"],
    ),
    Kind("str enum", "id text", ("id",), list(Color), ["red", "green", "blue"], ["red", "green", "blue"]),
    Kind("int enum", "id int", ("id",), list(Level), ["1", "20", "300"], ["1", "20", "300"]),
    Kind(
        "numeric",
        "id numeric",
        ("id",),
        [Decimal("1.50"), Decimal("-3"), Decimal("12345678901234567890.123")],
        ["1.50", "-3", "12345678901234567890.123"],
        ["1.50", "-3", "12345678901234567890.123"],
    ),
    Kind(
        "float",
        "id double precision",
        ("id",),
        [1.5, -0.25, 1e20],
        ["1.5", "-0.25", "1e+20"],
        ["1.5", "-0.25", "1e+20"],
    ),
    Kind(
        "uuid, date",
        "id uuid, day date",
        ("id", "day"),
        [(U[0], D(2024, 1, 1)), (U[0], D(2024, 1, 2)), (U[1], D(2024, 1, 1))],
        [(str(U[0]), "2024-01-01"), (str(U[0]), "2024-01-02"), (str(U[1]), "2024-01-01")],
        [f'["{U[0]}","2024-01-01"]', f'["{U[0]}","2024-01-02"]', f'["{U[1]}","2024-01-01"]'],
    ),
    Kind(
        "int enum, str enum, timestamptz",
        "level int, color text, at timestamptz",
        ("level", "color", "at"),
        [
            (Level.LOW, Color.RED, datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
            (Level.LOW, Color.GREEN, datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
            (Level.HIGH, Color.RED, datetime.datetime(2024, 1, 2, 5, 4, 5, tzinfo=PLUS2)),
        ],
        [
            (1, "red", "2024-01-02T03:04:05+00:00"),
            (1, "green", "2024-01-02T03:04:05+00:00"),
            (300, "red", "2024-01-02T05:04:05+02:00"),
        ],
        [
            '[1,"red","2024-01-02T03:04:05+00:00"]',
            '[1,"green","2024-01-02T03:04:05+00:00"]',
            '[300,"red","2024-01-02T05:04:05+02:00"]',
        ],
    ),
]


def drain(r: Any, dsn: str, prefix: str) -> Any:
    return FastDrainer(r, dsn, prefix=prefix).drain()


# --- decode level: the writer's id and the drain's id are one function ---------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_canonical_id_and_decode_agree(kind):
    t = Table("s.k", key=kind.key)
    schema = TableSchema(t, sql.Identifier("s", "k"), (*kind.key, "n"))
    decoder = Decoder(schema)
    for i, expected in enumerate(kind.ids):
        objects, texts = kind.values(i), kind.values(i, texts=True)
        assert canonical_id(objects) == canonical_id(texts) == expected
        stored = rows.encode(kind.row(i, 1))
        parsed = orjson.loads(stored)
        assert canonical_id([parsed[c] for c in kind.key]) == expected  # what decode computes
        tombstones = [rows.tombstone(kind.key, list(objects)), rows.tombstone(kind.key, list(texts))]
        out = decoder.decode([expected] * 3, [stored, *tombstones])
        assert out.dead == []
        assert [(g, rid) for g, rid, *_ in out.items] == [(0, expected), (DELETE, expected), (DELETE, expected)]
    # The id the writer used to render (a quoted JSON string for a lone non-str,
    # non-int key) must be told apart, not silently accepted.
    if len(kind.key) == 1 and not isinstance(kind.objects[0], (str, int, float)):
        quoted = orjson.dumps(kind.objects[0], default=json_default).decode()
        out = decoder.decode([quoted], [rows.encode(kind.row(0, 1))])
        assert out.items == [] and "key mismatch" in out.dead[0][1]


def test_scalar_keys_of_any_type_are_keys_not_rows(r, prefix):
    sw = Syncwd(r, prefix=prefix)
    t = Table("k", key="id")
    for key, text in [(U[0], str(U[0])), (D(2024, 1, 1), "2024-01-01"), (Decimal("2.0"), "2.0"), (Color.RED, "red")]:
        assert sw.update(t, {"id": key, "n": 1}) == text
        assert sw.get(t, key) == sw.get(t, text) == {"id": text, "n": 1}
        assert sw.delete(t, key) == text
        assert sw.get(t, text) is None
    with pytest.raises(ValueError, match="key"):
        sw.get(Table("k2", key=("a", "b")), U[0])  # a lone value for a two-column key


# --- end to end, against PostgreSQL --------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_keys_land_are_read_deleted_and_retried_by_their_text(r, db, dsn, prefix, schema, kind):
    cols = ", ".join(kind.key)
    db.execute(
        f"CREATE TABLE {schema}.k ({kind.columns}, n int CONSTRAINT n_positive CHECK (n > 0), PRIMARY KEY ({cols}))"
    )
    t = Table(f"{schema}.k", key=kind.key, partitions=2)
    sw = Syncwd(r, prefix=prefix)
    n = len(kind.ids)

    written = sw.update(t, kind.row(0, 1))
    assert sw.update_many(t, [kind.row(i, i + 1) for i in range(1, n)]) == n - 1
    report = drain(r, dsn, prefix)
    assert list(list_dead(r, prefix)) == []  # before the fix: every record, as "key mismatch"
    assert (report.exit_code, report.upserted, report.dead_lettered) == (0, n, 0), report.to_dict()
    assert written == kind.ids[0]
    landed = db.execute(f"SELECT {cols}, n FROM {t.name} ORDER BY n").fetchall()
    assert landed == [(*kind.values(i), i + 1) for i in range(n)]

    for i, record_id in enumerate(kind.ids):
        # Stored under the documented id; read by the key object or by its text alike.
        assert r.exists(t.keys(t.partition(record_id), prefix).value(record_id))
        by_object = sw.get(t, kind.objects[i])
        assert by_object is not None and by_object["n"] == i + 1
        assert sw.get(t, kind.texts[i]) == by_object

    assert sw.delete(t, kind.texts[0]) == kind.ids[0]
    assert sw.get(t, kind.objects[0]) is None
    report = drain(r, dsn, prefix)
    assert (report.exit_code, report.deleted, report.dead_lettered) == (0, 1, 0), report.to_dict()
    assert [row[-1] for row in db.execute(f"SELECT {cols}, n FROM {t.name} ORDER BY n")] == list(range(2, n + 1))

    # A record PostgreSQL refuses is dead-lettered under its id, found by that
    # text for a retry, and lands once the cause is fixed.
    sw.update(t, kind.row(1, -1))
    report = drain(r, dsn, prefix)
    assert (report.exit_code, report.dead_lettered) == (1, 1), report.to_dict()
    (entry,) = list_dead(r, prefix)
    assert entry.id == kind.ids[1] and "n_positive" in entry.error
    db.execute(f"ALTER TABLE {t.name} DROP CONSTRAINT n_positive")
    assert retry_dead(r, prefix, ids=[kind.ids[1]]) == 1
    report = drain(r, dsn, prefix)
    assert (report.exit_code, report.upserted, report.dead_lettered) == (0, 1, 0), report.to_dict()
    assert list(list_dead(r, prefix)) == []
    where = " AND ".join(f"{c} = %s" for c in kind.key)
    assert db.execute(f"SELECT n FROM {t.name} WHERE {where}", kind.values(1)).fetchone() == (-1,)
    assert count(db, t.name) == n - 1
