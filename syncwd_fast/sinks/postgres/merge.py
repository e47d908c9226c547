"""The merge: a text COPY of the batch into a temp stage table with the
target's column types, then, in one transaction, ``DELETE ... USING`` for
tombstones (and for new rows written after a delete), and per column group
either ``INSERT ... ON CONFLICT ... DO UPDATE`` or, where the group lacks a NOT
NULL column a new row would need, ``UPDATE`` of the existing rows and
``INSERT`` of the missing ones.

Most records arrive typed (decode.py renders their values as the COPY text
of the stage columns ``c0..cN-1``): PostgreSQL's work per row is that of its
own bulk path. A record with a value only PostgreSQL can convert exactly
arrives as its JSON document, and its statements read it as a record of the
columns they need (``jsonb_to_record``, the same conversion as
``jsonb_populate_record``; a domain column is read as its base type and
checked when it is assigned). Either way the server's own type input does the
typing, and a JSON key that is missing never nulls a column (each group
updates only the columns its records carry). A typed COPY the server refuses
(a value its type does not accept) is sent again with every record on the
jsonb path, where the bad value is pinned on its record.

Records PostgreSQL rejects for their data are isolated inside the same
transaction: the failing statement is rolled back to its savepoint, the
screen finds what breaks the table's constraints set-wise (screen.py), and
the rest runs again on halves of its records, or one record at a time
server-side once two halves fail (one_by_one.py), until the bad ones are
found; they are dead-lettered with the server's message and the rest
commits. Nothing is committed in pieces.

The common batch (one column group, nothing deleted, every record typed)
goes first the limit's own way: its typed columns alone into a stage of
those, and one statement (``Merger._typed_only``); refused there for its
data, it is rolled back and merged through the full stage as above.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from ... import speedups
from ...connection import Deadline, deadline
from ...errors import LeaseLost
from ..catalog import SchemaChanged
from .decode import DELETE, Decoded, Item, typed_width
from .one_by_one import ROW, Each, Failure, each_function, outcome
from .schema import Name, TableSchema, Text, type_sql
from .screen import CAST_ERROR, ScreenSQL, cast_screen, constraint_screen

log = logging.getLogger("syncwd_fast")

_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
_INTEGERS = ("smallint", "integer", "bigint")
_COPY_LINE = re.compile(r"\bCOPY syncwd_stage_\w+, line (\d+)")
# Isolating bad records runs many statements on a few stage rows each: an
# index, dropped before COMMIT so the common path never maintains it. With
# sequential scans off every plan costs above jit_above_cost: JIT compiling
# would then take most of a second per statement.
_CAREFUL = (
    "CREATE INDEX syncwd_stage_i ON {stage} (i)",
    "SET LOCAL enable_seqscan = off",
    "SET LOCAL jit = off",
)
_END_CAREFUL = "DROP INDEX pg_temp.syncwd_stage_i"

# SQLSTATE classes that blame the server, the link, the configuration or this
# program, never one record: connection, invalid transaction state (e.g. a
# read-only standby), authorization, no database/schema, rollback (deadlock,
# serialization), insufficient resources, lock not available, operator
# intervention (timeouts, shutdown), system error, config file, internal error,
# feature not supported. Every other error a statement over some records
# raises (data exceptions, integrity violations, a trigger's RAISE with any
# code, a value a type refuses) is pinned on the records by isolating them.
NOT_THE_DATA = ("08", "25", "28", "3D", "40", "53", "55", "57", "58", "F0", "XX")
INSUFFICIENT_PRIVILEGE = "42501"
# Classes that may blame a record (a regclass naming no relation or schema,
# a cross-database name) or the schema (a trigger reaching for a relation or
# function that is gone): pinned on records only when other records of the
# same statement succeed; when every record fails so, it is no record's fault.
AMBIGUOUS = ("0A", "3F", "42")
CARDINALITY_VIOLATION = "21000"
FOREIGN_KEY_VIOLATION = "23503"
UNDEFINED_COLUMN = "42703"
UNDEFINED_TABLE = "42P01"
NOT_NULL_VIOLATION = "23502"


def is_data_error(exc: psycopg.Error) -> bool:
    state = exc.sqlstate
    return bool(state) and state[:2] not in NOT_THE_DATA and state != INSUFFICIENT_PRIVILEGE  # type: ignore[index]


def _error(state: str, message: str) -> psycopg.Error:
    """An error of the class PostgreSQL names by ``state``."""
    try:
        return psycopg.errors.lookup(state)(message)
    except KeyError:
        return psycopg.errors.ProgrammingError(message)


def describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip()
    if diag.message_detail:
        text += f" ({diag.message_detail})"
    return f"{text} [SQLSTATE {exc.sqlstate}]"


def stage_name(schema: TableSchema) -> str:
    """A temp stage per list of column types: tables of the same types share
    one, and a table whose columns change gets a new one."""
    digest = hashlib.sha1(repr(schema.types).encode()).hexdigest()[:16]
    return f"syncwd_stage_{digest}"


def typed_stage_name(schema: TableSchema) -> str:
    """The stage of the typed columns alone (``Merger._typed_only``)."""
    return stage_name(schema) + "_typed"


def typed_stage_ddl(schema: TableSchema) -> sql.Composed:
    """A stage of the target's columns only, of their types, for the common
    batch: the limit's own shape (no index, group, flag or document)."""
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(typed_stage_name(schema)),
        sql.SQL(", ").join(
            sql.SQL("c{} {}").format(sql.SQL(str(p)), sql.SQL(t))
            for p, (_, t) in enumerate(schema.types[: typed_width(schema)])
        ),
    )


def stage_ddl(schema: TableSchema) -> sql.Composed:
    """The stage: index, group, "delete the old row first", the document of a
    record on the jsonb path, and one column per target column, of its type
    (under its domain: NOT NULL and CHECKs apply at the target)."""
    return sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {} (i int NOT NULL, g int NOT NULL, del boolean NOT NULL,"
        " doc jsonb{}) ON COMMIT DELETE ROWS"
    ).format(
        sql.Identifier(stage_name(schema)),
        sql.SQL("").join(
            sql.SQL(", c{} {}").format(sql.SQL(str(p)), sql.SQL(t))
            for p, (_, t) in enumerate(schema.types[: typed_width(schema)])
        ),
    )


def copy_payload(items: list[Item], staged: list[int], pure: bool | None = None, skip: int = 0) -> bytes:
    """The stage lines of the ``items`` at ``staged``, in its order, each
    without its first ``skip`` fields (ValueError if it has fewer): in C
    where built (``pure`` as in ``key_order``)."""
    if not pure and (pure is False or speedups.ACTIVE == "c"):
        return speedups.module().ordered_lines(items, staged, skip)  # type: ignore[no-any-return]
    if not skip:
        return b"".join([items[i][3] for i in staged])
    try:
        return b"".join([items[i][3].split(b"\t", skip)[skip] for i in staged])
    except IndexError:
        raise ValueError("a line has fewer fields than it skips") from None


def key_order(items: list[Item], staged: list[int], integer_key: bool, pure: bool | None = None) -> list[int]:
    """``staged`` in the order of the records' keys: rows reach the target's
    key index in order, each next to the last (in Redis's hash order each
    lands on a leaf of its own: a fifth of the backend's CPU at 1M rows). An
    integer key sorts as numbers (in C where built: ``pure`` False, or None
    as ``speedups.ACTIVE`` says), any other by its id's text (a key of
    several columns by the JSON text of their values: near, not exact)."""
    if integer_key:
        if not pure and (pure is False or speedups.ACTIVE == "c"):
            order: list[int] | None = speedups.module().int_order(items, staged)
            if order is not None:
                return order
        try:
            keys: list[Any] = list(map(int, [items[i][1] for i in staged]))
        except ValueError:  # an id a JSON string spells ("1e3"): PostgreSQL judges it
            return staged
    else:
        keys = [items[i][1] for i in staged]
    order = sorted(range(len(staged)), key=keys.__getitem__)
    return [staged[k] for k in order]


def _xid(mark: str) -> int | None:
    """The PostgreSQL transaction a "generation@xid" mark names; None for a
    mark without one, or with another destination's token."""
    token = mark.partition("@")[2]
    return int(token) if token.isdigit() and token.isascii() else None


class _DeferredRejected(Exception):
    """A deferred constraint failed when the batch's checks were fired."""


class _TypedRefused(Exception):
    """PostgreSQL refused the typed COPY (a value its column's type does not
    accept, a stage row too big, ...): copy the batch again on the jsonb path."""


class _CopyRejected(Exception):
    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        self.reason = reason


@dataclass
class MergeResult:
    upserted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # older than the row's version: not written
    dead: list[tuple[str, str]] = field(default_factory=list)
    recreated: dict[str, str] = field(default_factory=dict)  # id -> generation, merged as new rows
    # of ``upserted``, how many were not written: records of key columns only
    # whose row already existed (durable all the same)
    unchanged: int = 0


@dataclass(frozen=True)
class _Statement:
    """One SQL statement over a set of stage rows: ``whole`` selects them by
    group (``%(g)s``), ``some`` by index (``%(idx)s``), ``one`` the row
    one_by_one.ROW names."""

    whole: sql.Composed
    some: sql.Composed
    one: sql.Composed
    # ``whole`` reading the stage's typed columns alone (no jsonb branch), for
    # a batch with no record on the jsonb path; ``typed_all`` also without the
    # group's filter, for a group that is the whole stage
    typed_whole: sql.Composed | None
    typed_all: sql.Composed | None
    # ``typed_all`` over the stage of the typed columns alone (_typed_only)
    narrow: sql.Composed | None
    returns_stale: bool = False  # yields the stage indices the version guard skips
    counts_unchanged: bool = False  # an INSERT ... DO NOTHING: rows it did not insert were there already


@dataclass(frozen=True)
class _Unit:
    """The statements that merge one column group (or the deletes)."""

    statements: list[_Statement]
    # A group lacking NOT NULL columns a new row needs: those columns, and the
    # statement finding which of its records are new rows.
    needs: tuple[str, ...] = ()
    new_rows: _Statement | None = None
    # What a failed statement's records are screened with (screen.py)
    screen: ScreenSQL | None = None
    casts: ScreenSQL | None = None
    columns: tuple[str, ...] = ()  # the group's
    check_screen: ScreenSQL | None = None  # ``screen``'s CHECKs alone


class Merger:
    """Merges batches of one table on one connection."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: TableSchema,
        lock_key: tuple[int, int],
        still_leased: Callable[[], bool],
        deadline_s: float = 600.0,
        landing: Callable[[int, dict[str, str]], object] | None = None,
    ) -> None:
        """``landing(xid, {id: generation})`` notes, before COMMIT, the
        transaction that replaces the old rows of new rows after a delete
        (scripts.landing), so that a replay after a crash can tell."""
        self.conn = conn
        self.deadline_s = deadline_s
        self.lock_key = lock_key
        self.still_leased = still_leased
        self.landing = landing
        self.set_schema(schema)

    def set_schema(self, schema: TableSchema) -> None:
        self.schema = schema
        self.stage = sql.Identifier(stage_name(schema))
        self.typed_stage = sql.Identifier(typed_stage_name(schema))
        self._position = {c: p for p, c in enumerate(schema.columns)}
        self._integer_key = len(schema.key) == 1 and dict(schema.types)[schema.key[0]] in _INTEGERS
        self._units: dict[tuple[str, ...], _Unit] = {}
        self._each: dict[int, Each] = {}
        self._unresolved: dict[int, sql.Composed | None] = {}
        self._order: dict[int, sql.Composed | None] = {}
        # units whose last screen found bad records: screened before their
        # statements run, while bad data keeps coming (screen.py); True when
        # those broke CHECKs only (then screened for CHECKs alone)
        self.suspects: dict[int, bool] = {}
        # units whose last batch went one record at a time and found bad
        # ones: they start so, while bad data keeps coming (one_by_one.py)
        self.piecemeal: set[int] = set()
        self._delete = self._delete_unit()
        self._copy = sql.SQL("COPY {} (i, g, del, doc{}) FROM STDIN").format(
            self.stage, sql.SQL("").join(sql.SQL(f", c{p}") for p in range(typed_width(schema)))
        )
        self._typed_copy = sql.SQL("COPY {} FROM STDIN").format(self.typed_stage)
        with deadline(self.conn, self.deadline_s):
            self.conn.execute(stage_ddl(schema))
            if typed_width(schema):
                self.conn.execute(typed_stage_ddl(schema))

    def merge(self, batch: Decoded, ids: bool = True) -> MergeResult:
        """Merge the batch in one transaction. ``ids`` False: the common batch
        (every record written) leaves ``upserted`` and ``deleted`` empty, for
        a caller that reads only what was not written (PostgresSink)."""
        result = MergeResult()
        if not batch.items:
            return result
        replace = batch.replace
        rejected: dict[int, str] = {}  # refused by COPY itself (a number jsonb cannot hold, ...)
        immediate = False
        run = self._typed_only(batch)
        while run is None:
            try:
                run = self._transaction(batch, rejected, immediate)
            except _TypedRefused:
                # The jsonb path pins a bad value on its record, with the
                # message its column's type gives.
                batch = batch.as_jsonb()
            except _CopyRejected as exc:
                rejected[exc.index] = exc.reason
            except _DeferredRejected:
                immediate = True
        items = batch.items
        dead = {**rejected, **run.dead}
        result.unchanged = run.unchanged
        if not dead and not run.stale and not replace:  # the common batch: every record written
            if not ids:
                return result
            result.upserted = [item[1] for item in items if item[0] != DELETE]
            if len(result.upserted) < len(items):
                result.deleted = [item[1] for item in items if item[0] == DELETE]
            return result
        for i, (g, rid, _, _) in enumerate(items):
            if i in dead:
                result.dead.append((rid, dead[i]))
            elif g == DELETE:
                result.deleted.append(rid)
            elif i in run.stale:
                result.skipped.append(rid)
            else:
                result.upserted.append(rid)
                if rid in replace:
                    result.recreated[rid] = replace[rid]
        return result

    def _typed_only(self, batch: Decoded) -> _Run | None:
        """The common batch the limit's own way: its typed columns alone
        COPYed (in key order) into a stage of those, and one statement. Only
        for a batch of one column group, with no delete, no new row after a
        delete and no record on the jsonb path, whose group merges with one
        statement (no version guard, no NOT NULL column lacking) and found no
        bad record lately. The full stage's index, group, flag and document
        cost PostgreSQL 7% more per row (1M narrow rows in the drain's key
        order). None when the batch is not such, or when PostgreSQL refuses
        it for its data (rolled back): the full path then merges the batch,
        and finds and words what failed."""
        items = batch.items
        if batch.jsonb or batch.replace or not typed_width(self.schema):
            return None
        group = items[0][0]
        if group == DELETE or [item[0] for item in items].count(group) != len(items):
            return None
        unit = self._unit(batch.columns[group])
        if len(unit.statements) != 1 or unit.needs or id(unit) in self.suspects or id(unit) in self.piecemeal:
            return None
        statement = unit.statements[0]
        if statement.narrow is None or statement.returns_stale:
            return None
        order = key_order(items, list(range(len(items))), self._integer_key)
        try:
            payload = copy_payload(items, order, skip=4)  # past i, g, del and doc
        except ValueError:
            return None
        try:
            with deadline(self.conn, self.deadline_s) as clock, self.conn.transaction(), self.conn.cursor() as cur:
                with cur.copy(self._typed_copy) as copy:
                    copy.write(payload)
                cur.execute(_LOCK, self.lock_key)  # as _transaction takes it, after the COPY
                # With (empty) parameters: names carry "%" doubled (schema.Name), as in every statement
                # here, and only a query with parameters has "%%" read as "%".
                cur.execute(statement.narrow, {})
                run = _Run(self, cur, clock, items, typed=True, staged=len(items))
                if statement.counts_unchanged:
                    run.unchanged = len(items) - max(cur.rowcount, 0)
                with self.conn.transaction():  # deferred constraints fire here, not at COMMIT
                    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                if not self.still_leased():
                    raise LeaseLost(
                        f"{self.schema.table.name} partition {self.lock_key[1]}: lease lost to another drainer before"
                        " COMMIT; this batch was rolled back, nothing older was written"
                    )
        except psycopg.Error as exc:
            undefined = isinstance(exc, (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable))
            if self.conn.broken or not (is_data_error(exc) or undefined):
                raise
            log.debug("the typed-only merge was refused (%s): merging the batch through the full stage", exc)
            return None
        return run

    def _transaction(self, batch: Decoded, rejected: dict[int, str], immediate: bool) -> _Run:
        items, replace = batch.items, batch.replace
        staged = [i for i in range(len(items)) if i not in rejected] if rejected else list(range(len(items)))
        groups: dict[int, list[int]] = {}
        deleting: list[int] = []
        for i in staged:
            g = items[i][0]
            if g == DELETE:
                deleting.append(i)
                continue
            if replace and items[i][1] in replace:
                deleting.append(i)
            group = groups.get(g)
            if group is None:
                group = groups[g] = []
            group.append(i)
        order = key_order(items, staged, self._integer_key)
        with deadline(self.conn, self.deadline_s) as clock, self.conn.transaction(), self.conn.cursor() as cur:
            try:
                with cur.copy(self._copy) as copy:
                    copy.write(copy_payload(items, order))
            except psycopg.Error as exc:
                if is_data_error(exc) and not batch.jsonb_only and not self.conn.broken:
                    raise _TypedRefused from exc
                # The server names the row it refused: drop it and copy again.
                line = _COPY_LINE.search(exc.diag.context or "")
                if is_data_error(exc) and line and 0 < int(line[1]) <= len(order):
                    raise _CopyRejected(order[int(line[1]) - 1], describe(exc)) from exc
                raise
            # Serializes merges of this partition with any other drainer that
            # may still believe it holds the lease (a stalled one waking up).
            # Taken after the COPY: a client stopped mid-COPY keeps its backend
            # waiting for data beyond any timeout, and must not hold this lock.
            cur.execute(_LOCK, self.lock_key)
            if immediate:
                # Deferred constraints failed at the end of a first try: check
                # them statement by statement, so the records can be blamed.
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            marks: dict[str, str] = {}
            if replace:
                deleting, marks = self._replacing(cur, items, staged, replace, deleting)
            run = _Run(self, cur, clock, items, typed=not batch.jsonb, staged=len(staged))
            # Deletes first: a new row after a delete replaces the old row whole.
            run.apply(self._delete, deleting, DELETE)
            run.settle()
            self._note(cur, {rid: mark for rid, mark in marks.items() if rid not in run.dead_ids()})
            for g, indices in groups.items():
                run.apply(self._unit(batch.columns[g]), indices, g)
            run.settle()  # once every group is merged: a record may need one of another group
            run.blame(staged)
            run.finish()
            if not immediate:
                # Deferred constraints fire at COMMIT, outside every savepoint,
                # where no record could be blamed: fire them here, and if they
                # fail, merge again with every constraint checked at once.
                try:
                    with self.conn.transaction():
                        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                except psycopg.Error as exc:
                    if not is_data_error(exc) or self.conn.broken:
                        raise
                    raise _DeferredRejected from exc
            # Checked under the advisory lock: a lease lost before this point
            # rolls the batch back; one lost after it cannot be taken over
            # until this transaction ends.
            if not self.still_leased():
                raise LeaseLost(
                    f"{self.schema.table.name} partition {self.lock_key[1]}: lease lost to another drainer before"
                    " COMMIT; this batch was rolled back, nothing older was written"
                )
        return run

    def _replacing(
        self,
        cur: psycopg.Cursor[Any],
        items: list[Item],
        staged: list[int],
        replace: dict[str, str],
        deleting: list[int],
    ) -> tuple[list[int], dict[str, str]]:
        """Which new rows after a delete still replace their old row: not
        those whose replacing transaction (noted as "generation@xid") already
        committed, as when a drainer died between that COMMIT and its ack.
        Asked under the advisory lock, so that transaction has ended. Returns
        the stage rows to delete first, and the marks to note once their old
        rows are deleted."""
        xids = {x for x in map(_xid, replace.values()) if x is not None}
        committed = {x for x in sorted(xids) if self._committed(cur, x)}
        landed = {rid for rid, mark in replace.items() if _xid(mark) in committed}
        if landed:
            again = [i for i in deleting if items[i][1] in landed]
            cur.execute(sql.SQL("UPDATE {} SET del = false WHERE i = ANY(%s)").format(self.stage), (again,))
            deleting = [i for i in deleting if items[i][1] not in landed]
        ongoing = {items[i][1]: replace[items[i][1]] for i in staged if items[i][1] in replace}
        return deleting, {rid: mark for rid, mark in ongoing.items() if rid not in landed}

    def _note(self, cur: psycopg.Cursor[Any], marks: dict[str, str]) -> None:
        """Note this transaction on the new rows whose old rows it deleted
        (only those: a delete refused and dead-lettered must be done again)."""
        if marks and self.landing is not None:
            cur.execute("SELECT txid_current()")
            row = cur.fetchone()
            self.landing(int(row[0]), marks)  # type: ignore[index]

    def _committed(self, cur: psycopg.Cursor[Any], xid: int) -> bool:
        """Whether transaction ``xid`` committed; an xid this server cannot
        place (from another cluster, or too old to know) counts as not."""
        try:
            with self.conn.transaction():
                cur.execute("SELECT txid_status(%s)", (xid,))
                row = cur.fetchone()
        except psycopg.errors.InvalidParameterValue:
            return False
        return bool(row and row[0] == "committed")

    # --- SQL ------------------------------------------------------------------

    def _both(
        self, template: str, columns: tuple[str, ...], whole: str = "s.g = %(g)s", **parts: sql.Composable
    ) -> tuple[sql.Composed, sql.Composed, sql.Composed, sql.Composed | None, sql.Composed | None, sql.Composed | None]:
        """``template``'s ``{source}`` is the stage rows as ``s`` (``_source``),
        and ``{where}`` selects rows: by group (``whole``), by index, or one;
        then ``whole`` and every row, over the typed columns alone (the
        stage itself as ``s``; None for a stage without typed columns); then
        every row of the stage of the typed columns alone."""
        common = {"table": self.schema.ident, "source": self._source(columns)}
        typed = {"table": self.schema.ident, "source": sql.SQL("{} AS s").format(self.stage)}
        narrow = {"table": self.schema.ident, "source": sql.SQL("{} AS s").format(self.typed_stage)}
        has_typed = typed_width(self.schema) > 0
        return (
            sql.SQL(template).format(**common, **parts, where=sql.SQL(whole)),
            sql.SQL(template).format(**common, **parts, where=sql.SQL("s.i = ANY(%(idx)s)")),
            sql.SQL(template).format(**common, **parts, where=sql.SQL(f"s.i = {ROW}")),
            sql.SQL(template).format(**typed, **parts, where=sql.SQL(whole)) if has_typed else None,
            sql.SQL(template).format(**typed, **parts, where=sql.SQL("true")) if has_typed else None,
            sql.SQL(template).format(**narrow, **parts, where=sql.SQL("true")) if has_typed else None,
        )

    def _source(self, columns: tuple[str, ...]) -> sql.Composed:
        """The stage rows as ``s`` (i, g, del, and ``c<position>`` for each of
        ``columns``, those a statement reads): typed rows as they are, rows on
        the jsonb path read from their document as the target's types. One
        statement reads both, so which records meet in it does not depend on
        the path each took."""
        s = self.schema
        types = dict(s.types)
        typed = sql.SQL(", ").join(sql.SQL(f"s.c{self._position[c]}") for c in columns)
        read = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(Name("r", c), sql.SQL(f"c{self._position[c]}")) for c in columns
        )
        record = sql.SQL(", ").join(sql.SQL("{} {}").format(Name(c), type_sql(types[c])) for c in columns)
        return sql.SQL(
            "({typed}SELECT s.i, s.g, s.del, {read} FROM {stage} s"
            " CROSS JOIN LATERAL jsonb_to_record(s.doc) AS r({record}) WHERE s.doc IS NOT NULL) AS s"
        ).format(
            typed=sql.SQL("SELECT s.i, s.g, s.del, {} FROM {} s WHERE s.doc IS NULL UNION ALL ").format(
                typed, self.stage
            )
            if typed_width(s)
            else sql.SQL(""),  # a stage without typed columns
            read=read,
            record=record,
            stage=self.stage,
        )

    def _col(self, column: str) -> sql.Composable:
        """A column of the record being merged (in ``{source}``)."""
        return sql.SQL(f"s.c{self._position[column]}")

    def _key_match(self, left: str) -> sql.Composed:
        return sql.SQL(" AND ").join(
            sql.SQL("{}.{} = {}").format(Name(left), Name(c), self._col(c)) for c in self.schema.key
        )

    def _delete_unit(self) -> _Unit:
        # Tombstones and replaced rows are flagged in the stage, across groups.
        return _Unit(
            [
                _Statement(
                    *self._both(
                        "DELETE FROM {table} AS t USING {source} WHERE {where} AND {match}",
                        self.schema.key,
                        whole="s.del",
                        match=self._key_match("t"),
                    )
                )
            ]
        )

    def _unit(self, columns: tuple[str, ...]) -> _Unit:
        """The statements that merge one column group: skipped-as-stale
        lookup (version column), then upsert, or update + insert."""
        known = self._units.get(columns)
        if known is not None:
            return known
        s = self.schema
        ident = Name
        col = self._col
        updates = [c for c in columns if c not in s.key]
        version = s.table.version_column if s.table.version_column in columns else None
        unit: list[_Statement] = []
        if version:
            # The guard keeps a row whose stored version is newer; equal or
            # null versions are not older, so the later write wins.
            unit.append(
                _Statement(
                    *self._both(
                        "SELECT s.i FROM {source} JOIN {table} AS t ON {match} WHERE {where} AND t.{v} > {rv}",
                        (*s.key, version),
                        match=self._key_match("t"),
                        v=ident(version),
                        rv=col(version),
                    ),
                    returns_stale=True,
                )
            )
        cols = sql.SQL(", ").join(map(ident, columns))
        rcols = sql.SQL(", ").join(col(c) for c in columns)
        key = sql.SQL(", ").join(map(ident, s.key))
        if updates:
            action: sql.Composable = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(c)) for c in updates)
            )
            if version:
                action += sql.SQL(" WHERE t.{0} IS NULL OR EXCLUDED.{0} IS NULL OR t.{0} <= EXCLUDED.{0}").format(
                    ident(version)
                )
        else:
            action = sql.SQL("DO NOTHING")
        needs = tuple(sorted(s.required - set(columns)))
        missing_only: sql.Composable = sql.SQL("")
        new_rows = None
        if needs:
            # INSERT checks NOT NULL on the proposed row before it looks for a
            # conflict, so a record lacking a required column could never
            # update its existing row that way: update existing rows first,
            # insert only the missing ones (which then need every NOT NULL column).
            if updates:
                guard: sql.Composable = sql.SQL("")
                if version:
                    guard = sql.SQL(" AND (t.{0} IS NULL OR {1} IS NULL OR t.{0} <= {1})").format(
                        ident(version), col(version)
                    )
                unit.append(
                    _Statement(
                        *self._both(
                            "UPDATE {table} AS t SET {sets} FROM {source} WHERE {where} AND {match}{guard}",
                            columns,
                            sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(ident(c), col(c)) for c in updates),
                            match=self._key_match("t"),
                            guard=guard,
                        )
                    )
                )
            missing_only = sql.SQL(" AND NOT EXISTS (SELECT FROM {table} AS e WHERE {match})").format(
                table=s.ident, match=self._key_match("e")
            )
            new_rows = _Statement(
                *self._both(
                    "SELECT s.i FROM {source} WHERE {where}{missing_only}",
                    s.key,
                    missing_only=missing_only,
                )
            )
        unit.append(
            _Statement(
                *self._both(
                    "INSERT INTO {table} AS t ({cols}){overriding} SELECT {rcols} FROM {source}"
                    " WHERE {where}{missing_only} ON CONFLICT ({key}) {action}",
                    columns,
                    cols=cols,
                    rcols=rcols,
                    key=key,
                    action=action,
                    missing_only=missing_only,
                    overriding=sql.SQL(" OVERRIDING SYSTEM VALUE" if s.overriding else ""),
                ),
                counts_unchanged=not updates,
            )
        )
        self._units[columns] = _Unit(
            unit,
            needs,
            new_rows,
            constraint_screen(
                self, columns, guarded_update=bool(needs and updates and version), new_only=bool(needs and not updates)
            ),
            cast_screen(self, columns),
            columns,
            constraint_screen(
                self,
                columns,
                guarded_update=bool(needs and updates and version),
                new_only=bool(needs and not updates),
                only_checks=True,
            ),
        )
        return self._units[columns]

    def each(self, unit: _Unit) -> Each:
        """``unit``'s function merging records one by one (one_by_one.py)."""
        known = self._each.get(id(unit))
        if known is None:
            statements = [
                # Run without parameters inside the function: no % doubled.
                (st.one.as_string(self.conn).replace("%%", "%"), st.returns_stale, st.counts_unchanged)
                for st in unit.statements
            ]
            known = self._each[id(unit)] = each_function(
                statements, NOT_THE_DATA, (UNDEFINED_COLUMN, UNDEFINED_TABLE, INSUFFICIENT_PRIVILEGE)
            )
        return known

    def unresolved(self, unit: _Unit) -> sql.Composed | None:
        """The query finding, among stage rows ``%(idx)s`` of ``unit``'s group,
        those whose reference to their own table (a foreign key) no row of
        the table and no other of those rows meets; None when the group does
        not carry the columns of every such key."""
        if id(unit) in self._unresolved:
            return self._unresolved[id(unit)]
        keys = self.schema.constraints.references
        carried = set(unit.columns)
        query = None
        if keys and all(carried.issuperset((*k.columns, *k.referenced_columns)) for k in keys):

            def x(c: str) -> sql.SQL:
                return sql.SQL(f"x.c{self._position[c]}")

            source = self._source(unit.columns)
            missing = [
                sql.SQL(
                    "({notnull} AND NOT EXISTS (SELECT FROM {table} AS o WHERE {o})"
                    " AND NOT EXISTS (SELECT FROM {source} WHERE s.i = ANY(%(idx)s) AND {s}))"
                ).format(
                    notnull=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(x(c)) for c in k.columns),
                    table=self.schema.ident,
                    o=sql.SQL(" AND ").join(
                        sql.SQL("o.{} = {}").format(Name(r), x(c)) for c, r in zip(k.columns, k.referenced_columns)
                    ),
                    source=source,
                    s=sql.SQL(" AND ").join(
                        sql.SQL("{} = {}").format(self._col(r), x(c)) for c, r in zip(k.columns, k.referenced_columns)
                    ),
                )
                for k in keys
            ]
            query = sql.SQL(
                "SELECT x.i FROM (SELECT * FROM {source} WHERE s.i = ANY(%(idx)s)) AS x WHERE {any}"
            ).format(source=source, any=sql.SQL(" OR ").join(missing))
        self._unresolved[id(unit)] = query
        return query

    def dependency_order(self, unit: _Unit) -> sql.Composed | None:
        """The query ordering stage rows ``%(idx)s`` of ``unit``'s group so
        that each comes after those it references by the table's references
        to itself (the group carrying their columns), the ones in a cycle
        last; None when it carries no such reference."""
        if id(unit) in self._order:
            return self._order[id(unit)]
        carried = set(unit.columns)
        keys = [
            k for k in self.schema.constraints.references if carried.issuperset((*k.columns, *k.referenced_columns))
        ]
        query = None
        if keys:

            def c(alias: str, column: str) -> sql.SQL:
                return sql.SQL(f"{alias}.c{self._position[column]}")

            refs = sql.SQL(" OR ").join(
                sql.SQL("({})").format(
                    sql.SQL(" AND ").join(
                        sql.SQL("{} = {}").format(c("x", f), c("y", r)) for f, r in zip(k.columns, k.referenced_columns)
                    )
                )
                for k in keys
            )
            query = sql.SQL(
                "WITH RECURSIVE x AS MATERIALIZED (SELECT * FROM {source} WHERE s.i = ANY(%(idx)s)),"
                " d(i, depth) AS (SELECT x.i, 0 FROM x"
                " WHERE NOT EXISTS (SELECT FROM x AS y WHERE y.i <> x.i AND ({refs}))"
                " UNION SELECT x.i, d.depth + 1 FROM d JOIN x AS y ON y.i = d.i JOIN x ON x.i <> y.i AND ({refs})"
                " WHERE d.depth < %(limit)s)"
                " SELECT x.i FROM x LEFT JOIN (SELECT i, max(depth) AS depth FROM d GROUP BY i) AS m ON m.i = x.i"
                " ORDER BY m.depth NULLS LAST, x.i"
            ).format(source=self._source(unit.columns), refs=refs)
        self._order[id(unit)] = query
        return query

    def _duplicates_sql(self) -> sql.Composed:
        """Stage rows (typed or not) whose keys PostgreSQL reads as one."""
        types = dict(self.schema.types)
        return sql.SQL(
            "SELECT array_agg(s.i ORDER BY s.i) FROM {stage} s WHERE s.i = ANY(%(idx)s)"
            " GROUP BY {key} HAVING count(*) > 1"
        ).format(
            stage=self.stage,
            key=sql.SQL(", ").join(
                sql.SQL("CASE WHEN s.doc IS NULL THEN {} ELSE (s.doc ->> {})::{} END").format(
                    self._col(c), Text(c), type_sql(types[c])
                )
                if typed_width(self.schema)
                else sql.SQL("(s.doc ->> {})::{}").format(Text(c), type_sql(types[c]))
                for c in self.schema.key
            ),
        )


class _Run:
    """One batch's statements inside its transaction, and the records they
    rejected (stage index -> reason) or skipped as stale."""

    # Halving goes on one record per subtransaction, this many a call, once
    # both halves of a part fail or it has dead-lettered this many records of
    # a batch (one_by_one.py; bench/bad_data.py's trigger cases measure it).
    ONE_BY_ONE_AFTER = 4
    ONE_BY_ONE = True  # False: halving only (bench.bad_data --halving-only)
    # Rounds of setting aside records whose reference to their own table
    # nothing can meet (each round, the records referencing those set aside);
    # past them, one by one in the order of the references finds the rest.
    UNRESOLVED_ROUNDS = 8
    ONE_BY_ONE_CHUNK = 1000

    def __init__(
        self,
        merger: Merger,
        cur: psycopg.Cursor[Any],
        clock: Deadline,
        items: list[Item],
        typed: bool = False,
        staged: int = -1,
    ) -> None:
        """``typed``: no stage row is on the jsonb path; ``staged``: how many
        rows the stage holds."""
        self.merger = merger
        self.cur = cur
        self.clock = clock
        self.items = items
        self.typed = typed
        self.staged = staged
        self.dead: dict[int, str] = {}
        self.stale: set[int] = set()
        self.unchanged = 0
        self.ambiguous: dict[int, psycopg.Error] = {}  # dead for an error that may not be theirs
        self.careful = False
        self.deduplicated: set[int] = set()  # units checked for two spellings of one key
        self.screened: set[int] = set()  # units whose failed records were screened (screen.py)
        self.halved = 0  # records dead-lettered by halving
        self.one_by_one = self.ONE_BY_ONE  # False once PL/pgSQL proved not to be had, or not to serve
        self.defined: set[int] = set()  # units whose one_by_one function this run created
        # unit -> (unit, {stage index: reason}): records that failed alone a
        # reference to their own table, settled once the other records are merged
        self.linked: dict[int, tuple[_Unit, dict[int, str]]] = {}
        self.deferring = True

    def apply(self, unit: _Unit, indices: list[int], group: int) -> None:
        """Run ``unit`` on the stage rows ``indices`` (all of ``group``'s, as
        far as none was dead-lettered by an earlier unit)."""
        live = [i for i in indices if i not in self.dead]
        whole = group if len(live) == len(indices) else None
        if len(live) > 1 and id(unit) in self.merger.suspects:
            # The last batch of this group held bad records: look for them
            # first, rather than run the statement to its failure (a foreign
            # key fails only once every row is written). If they broke CHECKs
            # only, look for those alone: should others fail, the statement
            # says so and the whole screen runs then.
            if self.merger.suspects[id(unit)] and unit.check_screen is not None:
                if whole is None:
                    self._be_careful()
                found = self._screened(unit.check_screen, live, whole, unit) or set()
            else:
                found = self._screen(unit, live, whole)
            if not found:
                self.merger.suspects.pop(id(unit), None)
            live = [i for i in live if i not in found]
        if len(live) > 1 and id(unit) in self.merger.piecemeal and self.one_by_one:
            # Rather than run the statement and two halves to their failure.
            self._be_careful()
            if id(unit) not in self.deduplicated:
                self.deduplicated.add(id(unit))
                if self._refuse_duplicates(unit, live):
                    live = []
            if live and self._one_by_one(unit, live):
                live = []
        if live:
            self._try(unit, live, whole)

    def dead_ids(self) -> set[str]:
        return {self.items[i][1] for i in self.dead}

    def blame(self, staged: list[int]) -> None:
        """Raise the error when every record of the batch failed with one that
        may not be theirs (a trigger reaching for a dropped table): that is no
        record's fault, and the batch waits in Redis for the cause to go."""
        if self.ambiguous and all(i in self.ambiguous for i in staged):
            raise self.ambiguous[staged[0]]

    def finish(self) -> None:
        if self.careful:
            self.cur.execute(_END_CAREFUL)

    def _run(self, unit: _Unit, indices: list[int], whole: int | None) -> tuple[set[int], int]:
        """The stage rows the version guard skipped, and how many rows an
        INSERT ... DO NOTHING found there already."""
        params = {"g": whole, "idx": indices}
        stale: set[int] = set()
        unchanged = 0
        for statement in unit.statements:
            query = statement.some
            if whole is not None:
                query = statement.whole
                # The batch's common shape: the cheapest statement with the same meaning.
                if self.typed and statement.typed_whole is not None:
                    query = (statement.typed_all if len(indices) == self.staged else statement.typed_whole) or query
            self.cur.execute(query, params)
            if statement.returns_stale:
                stale.update(row[0] for row in self.cur.fetchall())
            if statement.counts_unchanged:
                unchanged += len(indices) - max(self.cur.rowcount, 0)
        return stale, unchanged

    def _try(self, unit: _Unit, indices: list[int], whole: int | None) -> None:
        exc = self._attempt(unit, indices, whole)
        if exc is not None:
            self._isolate(unit, indices, exc, whole)

    def _attempt(self, unit: _Unit, indices: list[int], whole: int | None) -> psycopg.Error | None:
        """Run ``unit`` on ``indices`` in a savepoint; the error that blames
        their data, else None (then they are merged)."""
        conn = self.merger.conn
        try:
            with conn.transaction():  # a savepoint
                stale, unchanged = self._run(unit, indices, whole)
        except psycopg.Error as exc:
            # A column gone, or the target itself, is no record's fault (a
            # record's value may name a missing relation, as a regclass).
            if isinstance(exc, psycopg.errors.UndefinedColumn) or (
                isinstance(exc, psycopg.errors.UndefinedTable) and not conn.broken and not self._target_exists()
            ):
                raise SchemaChanged(str(exc).strip()) from exc
            if not is_data_error(exc) or conn.broken:
                raise
            self.clock.renew()
            return exc
        self.clock.renew()
        self.stale.update(stale)
        self.unchanged += unchanged
        return None

    def _target_exists(self) -> bool:
        self.cur.execute("SELECT to_regclass(%s) IS NOT NULL", (self.merger.schema.ident.as_string(self.cur),))
        row = self.cur.fetchone()
        return bool(row and row[0])

    def _be_careful(self) -> None:
        if not self.careful:
            for statement in _CAREFUL:
                self.cur.execute(sql.SQL(statement).format(stage=self.merger.stage))
            self.careful = True

    def _isolate(self, unit: _Unit, indices: list[int], exc: psycopg.Error, whole: int | None) -> None:
        if len(indices) > 1 and (unit.screen or unit.casts) and id(unit) not in self.screened:
            # Ask the stage which records the table's constraints refuse, in
            # one statement, before halving costs statements per bad record.
            found = self._screen(unit, indices, whole)
            if found:
                rest = [i for i in indices if i not in found]
                if rest:
                    # The rows found left the stage: the group's rows are the rest.
                    self._try(unit, rest, whole)
                return
        self._be_careful()
        if id(unit) not in self.deduplicated:
            # Two spellings of one key must be refused together whatever else
            # fails, before halving could split them and let either one win.
            self.deduplicated.add(id(unit))
            if self._refuse_duplicates(unit, indices):
                return
        if (
            exc.sqlstate == NOT_NULL_VIOLATION
            and unit.new_rows
            and exc.diag.column_name in unit.needs
            and not self.merger.schema.insert_triggers
        ):
            # Every new row of a group lacking a required column fails the same
            # way (no trigger can fill it in): dead-letter them all at once
            # instead of finding them one halving at a time.
            new = self._select(unit.new_rows.some, indices)
            if new:
                reason = (
                    f"a new row needs NOT NULL column(s) {', '.join(unit.needs)} without default,"
                    f" which the record does not carry [SQLSTATE {exc.sqlstate}]"
                )
                self.dead.update(dict.fromkeys(new, reason))
                rest = [i for i in indices if i not in new]
                if rest:
                    self._try(unit, rest, None)
                return
        if exc.sqlstate == CARDINALITY_VIOLATION and self._refuse_duplicates(unit, indices):
            return
        if len(indices) == 1:
            if self._defer(unit, indices[0], exc.sqlstate or "", exc.diag.constraint_name or "", describe(exc)):
                return
            self.dead[indices[0]] = describe(exc)
            self.halved += 1
            if (exc.sqlstate or "")[:2] in AMBIGUOUS:
                self.ambiguous[indices[0]] = exc
            return
        if self.halved >= self.ONE_BY_ONE_AFTER and self.one_by_one and self._one_by_one(unit, indices):
            return
        middle = len(indices) // 2
        left, right = indices[:middle], indices[middle:]
        left_failed = self._attempt(unit, left, None)
        right_failed = self._attempt(unit, right, None)
        if left_failed and right_failed and self.one_by_one and self._one_by_one(unit, indices):
            return  # two bad records at least: one by one costs less than halving on
        if left_failed:
            self._isolate(unit, left, left_failed, None)
        if right_failed:
            self._isolate(unit, right, right_failed, None)

    def _one_by_one(self, unit: _Unit, indices: list[int]) -> bool:
        """Merge ``indices`` one record per subtransaction, server-side, in
        chunks (one_by_one.py); False when PL/pgSQL is not to be had here."""
        failed = self._each(unit, indices)
        if failed is None:
            return False
        for i in [i for i, f in failed.items() if self._defer(unit, i, f.state, f.constraint, f.reason())]:
            del failed[i]
        if failed:
            self.merger.piecemeal.add(id(unit))
        else:
            self.merger.piecemeal.discard(id(unit))
        self._fail(failed)
        return True

    def _fail(self, failed: dict[int, Failure]) -> None:
        for i, f in failed.items():
            self.dead[i] = f.reason()
            if f.state[:2] in AMBIGUOUS:
                self.ambiguous[i] = _error(f.state, f.message)

    def _each(self, unit: _Unit, indices: list[int]) -> dict[int, Failure] | None:
        """Run ``unit`` on each of ``indices`` in a subtransaction of its own,
        in that order; the records that failed. None when PL/pgSQL is not to
        be had here."""
        each = self.merger.each(unit)
        if id(unit) not in self.defined:
            # Created in each run: a temp function may be gone with a reset session.
            self.one_by_one = self._define(each.create)
            if not self.one_by_one:
                return None
            self.defined.add(id(unit))
        failed: dict[int, Failure] = {}
        for start in range(0, len(indices), self.ONE_BY_ONE_CHUNK):
            chunk = indices[start : start + self.ONE_BY_ONE_CHUNK]
            if not self.one_by_one:
                self._try(unit, chunk, None)  # halving, as before
                continue
            try:
                with self.merger.conn.transaction():
                    self.cur.execute(each.call, (chunk,))
                    rows = self.cur.fetchall()
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.errors.UndefinedColumn):
                    raise SchemaChanged(str(exc).strip()) from exc
                if not is_data_error(exc) or self.merger.conn.broken:
                    raise
                # A record naming a missing relation (a regclass): the
                # statements' own errors decide, by halving.
                self.one_by_one = False
                self._try(unit, chunk, None)
                continue
            self.clock.renew()
            found = outcome(rows)
            self.stale.update(found.stale)
            self.unchanged += found.unchanged
            failed.update(found.failed)
        return failed

    def _defer(self, unit: _Unit, index: int, state: str, constraint: str, reason: str) -> bool:
        """Keep a record that failed alone a table's reference to itself for
        ``settle``: another record of the batch, maybe not merged yet, may be
        what it needs. False when it failed otherwise (or is being settled)."""
        if not self.deferring or state != FOREIGN_KEY_VIOLATION:
            return False
        if constraint not in {k.name for k in self.merger.schema.constraints.references}:
            return False
        self.linked.setdefault(id(unit), (unit, {}))[1][index] = reason
        return True

    def settle(self) -> None:
        """Merge together the records kept by ``_defer`` (a chain of
        references, a cycle, which one statement meets); those whose
        reference nothing can meet are dead-lettered with their own error."""
        while self.linked:
            _, (unit, linked) = self.linked.popitem()
            self.deferring = False
            try:
                settled = set(self._together(unit, sorted(linked)))
            finally:
                self.deferring = True
            for i, reason in linked.items():
                if i not in settled:
                    self.dead[i] = reason

    def _together(self, unit: _Unit, linked: list[int]) -> list[int]:
        """Records that failed alone a table's reference to itself: each may
        need another record of the batch (a chain, a cycle), which one
        statement over them all meets. Those whose reference neither the table
        nor the others can meet are set aside first, set-wise (they stay
        dead); the rest are merged together, or one by one in the order of
        their references if that still fails. Returns the records whose fate
        is settled here."""
        unresolved = self.merger.unresolved(unit)
        together = linked
        for _ in range(self.UNRESOLVED_ROUNDS if unresolved is not None else 0):
            found = self._select(unresolved, together)  # type: ignore[arg-type]
            if not found:
                break
            together = [i for i in together if i not in found]
        if not together:
            return []
        exc = self._attempt(unit, together, None)
        if exc is None:
            return together
        # Something else fails among them (a key mixing NULLs under MATCH FULL,
        # a chain longer than the rounds): one by one, each after the records
        # it references, then what still fails on a reference to its own
        # table together once more (a cycle).
        failed = self._each(unit, self._ordered(unit, together)) if self.one_by_one else None
        if failed is None:  # no PL/pgSQL here: halving
            usable, self.one_by_one = self.one_by_one, False
            try:
                self._isolate(unit, together, exc, None)
            finally:
                self.one_by_one = usable
            return together
        own = {k.name for k in self.merger.schema.constraints.references}
        cycle = [i for i, f in failed.items() if f.state == FOREIGN_KEY_VIOLATION and f.constraint in own]
        if len(cycle) > 1 and self._attempt(unit, cycle, None) is None:
            for i in cycle:
                del failed[i]
        self._fail(failed)
        return together

    def _ordered(self, unit: _Unit, indices: list[int]) -> list[int]:
        """``indices``, each after the records of them it references (by the
        table's references to itself), those in a cycle last."""
        query = self.merger.dependency_order(unit)
        if query is None:
            return indices
        try:
            with self.merger.conn.transaction():
                self.cur.execute(query, {"idx": indices, "limit": len(indices)})
                ordered = [row[0] for row in self.cur.fetchall()]
        except psycopg.Error as exc:
            if not is_data_error(exc) or self.merger.conn.broken:
                raise
            return indices
        return ordered if sorted(ordered) == sorted(indices) else indices

    def _define(self, function: str) -> bool:
        """Create a temp PL/pgSQL function; False where that is refused (no
        PL/pgSQL, no temp objects allowed)."""
        try:
            with self.merger.conn.transaction():
                self.cur.execute(function)
        except psycopg.Error as exc:
            if not is_data_error(exc) and exc.sqlstate != INSUFFICIENT_PRIVILEGE or self.merger.conn.broken:
                raise
            return False
        return True

    def _screen(self, unit: _Unit, indices: list[int], whole: int | None) -> set[int]:
        """Dead-letter the records the screen finds (they leave the stage);
        their stage indices. A value on the jsonb path that does not convert
        fails the screen: such values are found first, then it runs again."""
        self.screened.add(id(unit))
        if whole is None:
            self._be_careful()  # the stage's rows picked by index
        found = self._screened(unit.screen, indices, whole, unit) if unit.screen else None
        if found is not None:
            return found
        if unit.casts is None:
            return set()
        if not self._define(CAST_ERROR):
            return set()  # no PL/pgSQL here: halving finds them
        bad = self._screened(unit.casts, indices, whole) or set()
        rest = [i for i in indices if i not in bad]
        if bad:
            self.merger.suspects[id(unit)] = False
        again = self._screened(unit.screen, rest, whole, unit) if unit.screen and bad and rest else None
        return bad | (again or set())

    def _screened(
        self, screen: ScreenSQL, indices: list[int], whole: int | None, unit: _Unit | None = None
    ) -> set[int] | None:
        """Run one screen (``unit``'s constraint screen, if given); None when
        it fails for the data (or is not allowed to read a referenced table)."""
        try:
            with self.merger.conn.transaction():
                self.cur.execute(screen.whole if whole is not None else screen.some, {"g": whole, "idx": indices})
                rows = self.cur.fetchall()
        except psycopg.Error as exc:
            if not is_data_error(exc) and exc.sqlstate != INSUFFICIENT_PRIVILEGE or self.merger.conn.broken:
                raise
            return None
        self.clock.renew()
        for i, number, values in rows:
            self.dead[i] = screen.reason(number, values)
        if unit is not None and rows:  # what it found decides how the next batch is screened
            self.merger.suspects[id(unit)] = all(number < screen.checks for _, number, _ in rows)
        return {row[0] for row in rows}

    def _refuse_duplicates(self, unit: _Unit, indices: list[int]) -> bool:
        """Dead-letter stage rows whose keys PostgreSQL sees as one ("7" and
        "07" into an int key, differently cased UUIDs, citext), then merge the
        rest; False when there are none."""
        groups = self._duplicates(indices) if len(indices) > 1 else []
        for group in groups:
            ids = [self.items[i][1] for i in group]
            for i, rid in zip(group, ids):
                others = ", ".join(repr(o) for o in ids if o != rid)
                self.dead[i] = (
                    f"names the same row as id {others} in this batch (two spellings of one key);"
                    " none of them was written [SQLSTATE 21000]"
                )
        if not groups:
            return False
        rest = [i for i in indices if i not in self.dead]
        if rest:
            self._try(unit, rest, None)
        return True

    def _select(self, query: sql.Composed, indices: list[int]) -> set[int] | None:
        """The stage indices a query over ``indices`` returns; None when it
        fails for the data (a value that does not even parse)."""
        try:
            with self.merger.conn.transaction():
                self.cur.execute(query, {"idx": indices})
                return {row[0] for row in self.cur.fetchall()}
        except psycopg.Error as exc:
            if not is_data_error(exc) or self.merger.conn.broken:
                raise
            return None

    def _duplicates(self, indices: list[int]) -> list[list[int]]:
        try:
            with self.merger.conn.transaction():
                self.cur.execute(self.merger._duplicates_sql(), {"idx": indices})
                return [list(row[0]) for row in self.cur.fetchall()]
        except psycopg.Error as exc:
            if not is_data_error(exc) or self.merger.conn.broken:
                raise
            return []  # a key that does not even parse: plain halving finds it
