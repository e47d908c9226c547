"""The MariaDB/MySQL merge, one transaction per batch, as the PostgreSQL one:

1. the batch goes into a temporary stage with the target's column types
   (multi-row ``INSERT``s of the rendered texts, converted under strict SQL
   mode: a value its type refuses is named by row and dead-lettered);
2. the partition's ``GET_LOCK``;
3. ``DELETE ... JOIN`` the stage for tombstones and for new rows after a delete;
4. per group of records carrying the same columns: ``INSERT ... SELECT ... ON
   DUPLICATE KEY UPDATE`` of the columns they carry (a version column guards
   older writes), or, where a new row would lack a NOT NULL column or the
   table has another unique index, ``UPDATE ... JOIN`` of the existing rows
   and ``INSERT`` of the missing ones;
5. the lease checked, COMMIT, the lock released, the stage emptied.

A statement that fails for the data is rolled back to its savepoint and run
again on halves of its records until the bad ones are found; they are
dead-lettered with the server's message and the rest commits. A key that is
missing in a record never touches its column.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from ...errors import LeaseLost
from ..catalog import SchemaChanged
from .faults import CONFIGURATION, SCHEMA, describe, errno, is_data_error, is_transient
from .one_by_one import CLEAR_RESULTS, CREATE_RESULTS, READ_RESULTS, ROW, Step, block
from .render import DELETE, Decoded, Item, Raw
from .schema import MySQLSchema
from .screen import ScreenSQL, constraint_screen

LANDING_TABLE = "syncwd_fast_landing"
NO_DEFAULT = 1364  # a NOT NULL column without default left out of an INSERT
ROW_TOO_LARGE = 1118
_AT_ROW = re.compile(r" at row (\d+)\s*\Z")  # the server's, at the end: a value may hold the words too
# Statement text of a stage INSERT stays well under max_allowed_packet (16 MiB by default).
STAGE_BYTES = 2 << 20


# String literals as the session reads them (backslash escapes: the sink's
# sql_mode leaves out NO_BACKSLASH_ESCAPES).
_ESCAPES = str.maketrans({"\0": "\\0", "\n": "\\n", "\r": "\\r", "\\": "\\\\", "'": "\\'", '"': '\\"', "\x1a": "\\Z"})


def _literal(text: str | None) -> str:
    """A stage value that is not a plain string: NULL, or a number (Raw)."""
    if text is None:
        return "NULL"
    if type(text) is Raw:
        return text
    return "'" + text.translate(_ESCAPES) + "'"


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def lock_name(prefix: str, table: str, partition: int) -> str:
    """A GET_LOCK name (64 characters at most) for the partition."""
    digest = hashlib.sha1(f"{prefix}:{table}".encode()).hexdigest()[:40]
    return f"syncwd:{digest}:{partition}"


@dataclass
class MergeResult:
    dead: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # kept out by a newer version
    unchanged: int = 0  # records of key columns only whose row was there already


class _Refused(Exception):
    """The stage refused row ``index`` of ``rows`` (its value's type)."""

    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        self.reason = reason


class Merger:
    """Merges batches of one table on one connection."""

    def __init__(self, conn: Any, schema: MySQLSchema, lock_wait_s: float, max_packet: int = 1 << 22) -> None:
        self.conn = conn
        self.lock_wait_s = lock_wait_s
        # No statement may be longer than the server's max_allowed_packet (the
        # server drops the link on one that is); a record that cannot fit in
        # one is its own dead letter.
        self.row_limit = max_packet - 4096
        self.statement_bytes = min(STAGE_BYTES, self.row_limit)
        self.set_schema(schema)

    def set_schema(self, schema: MySQLSchema) -> None:
        self.schema = schema
        self._units: dict[tuple[str, ...], _Unit] = {}
        # groups whose last screen found bad records: screened before their
        # statements run, while bad data keeps coming
        self.suspects: set[tuple[str, ...]] = set()
        # groups whose last batch went one record at a time and found bad
        # ones: they start so, while bad data keeps coming (one_by_one.py)
        self.piecemeal: set[tuple[str, ...]] = set()
        self._steps: dict[int, list[Step]] = {}
        self.target = f"{ident(schema.database)}.{ident(schema.name)}"
        self._position = {c.name: p for p, c in enumerate(schema.columns)}
        try:
            self._create_stage(schema, wide=False)
        except pymysql.err.MySQLError as exc:
            if errno(exc) != ROW_TOO_LARGE:
                raise
            # The target's columns fit its rows, with the stage's own few and
            # every column NULL-able they may not: strings go as LONGTEXT (their
            # length is checked when they reach the target).
            self._create_stage(schema, wide=True)
        self._delete = self._delete_unit()

    def _create_stage(self, schema: MySQLSchema, wide: bool) -> None:
        self.wide = wide
        types = [c.stage_type(wide and c.name not in schema.key) for c in schema.columns]
        digest = hashlib.sha1(repr(list(zip(schema.names, types))).encode()).hexdigest()[:16]
        self.stage = ident(f"syncwd_stage_{digest}")
        with self.conn.cursor() as cur:
            cur.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.stage} (i INT NOT NULL, g INT NOT NULL,"
                " del TINYINT NOT NULL" + "".join(f", c{p} {t}" for p, t in enumerate(types)) + ", PRIMARY KEY (i))"
                " ENGINE=InnoDB"
            )
        self.conn.commit()

    # --- one batch --------------------------------------------------------------

    def merge(
        self,
        batch: Decoded,
        lock: str,
        still_leased: Callable[[], bool],
        landing: Callable[[str, dict[str, str]], object],
        landed: Callable[[list[str]], set[str]],
    ) -> MergeResult:
        """``landing(token, marks)`` notes before COMMIT the transaction that
        replaces old rows of new rows after a delete; ``landed(tokens)`` says
        which of such earlier transactions committed."""
        result = MergeResult()
        if not batch.items:
            return result
        refused: dict[int, str] = {}  # stage rows whose values the stage's types refused
        try:
            run = self._transaction(batch, refused, lock, still_leased, landing, landed)
        finally:
            self._end(lock)
        dead = {**refused, **run.dead}
        result.unchanged = run.unchanged
        for i, _g, rid, _d, _t in batch.items:
            if i in dead:
                result.dead.append((rid, dead[i]))
            elif i in run.stale:
                result.skipped.append(rid)
        return result

    def _end(self, lock: str) -> None:
        """Roll back what is still open (nothing after a COMMIT), release the
        lock, empty the stage: TRUNCATE commits implicitly, so only outside the
        batch's transaction (a DELETE inside it made the stage grow, each batch
        slower than the last)."""
        try:
            self.conn.rollback()
            with self.conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
                cur.execute(f"TRUNCATE TABLE {self.stage}")
        except pymysql.err.MySQLError:
            pass  # a broken link: the server ends the session, its lock and temporary tables

    def _transaction(
        self,
        batch: Decoded,
        refused: dict[int, str],
        lock: str,
        still_leased: Callable[[], bool],
        landing: Callable[[str, dict[str, str]], object],
        landed: Callable[[list[str]], set[str]],
    ) -> _Run:
        items = batch.items
        self.conn.begin()
        cur = self.conn.cursor()
        self._stage(cur, items, refused)
        # A refused record that is a new row after a delete (or a tombstone)
        # still deletes its old row, as on PostgreSQL: its key goes in alone.
        keys_only = [self._key_only(item) for item in items if item[0] in refused and item[3]]
        if keys_only:
            self._stage(cur, keys_only, {})
        cur.execute("SELECT GET_LOCK(%s, %s)", (lock, self.lock_wait_s))
        got = cur.fetchone()
        if not got or got[0] != 1:
            raise pymysql.err.OperationalError(1205, f"could not take the partition's lock {lock!r} in time")
        staged = [item for item in items if item[0] not in refused]
        groups: dict[int, list[int]] = {}
        deleting: list[int] = [item[0] for item in keys_only]
        for i, g, _rid, again, _texts in staged:
            if again:
                deleting.append(i)
            if g != DELETE:
                groups.setdefault(g, []).append(i)
        marks: dict[str, str] = {}
        if batch.replace:
            deleting, marks = self._replacing(cur, items, staged, batch.replace, deleting, landed)
        run = _Run(self, cur, items)
        run.apply(self._delete, deleting)
        marks = {rid: m for rid, m in marks.items() if rid not in run.dead_ids()}
        if marks:
            token = uuid.uuid4().hex
            cur.execute(f"INSERT INTO {LANDING_TABLE} (token) VALUES (%s)", (token,))
            landing(token, marks)
        for g, indices in groups.items():
            run.apply(self._unit(batch.columns[g]), indices, batch.columns[g])
        if not still_leased():
            raise LeaseLost(
                f"{self.schema.table.name}: lease lost to another drainer before COMMIT; this batch was rolled"
                " back, nothing older was written"
            )
        self.conn.commit()
        return run

    def _key_only(self, item: Item) -> Item:
        """``item`` with its key columns alone: what deleting its old row needs."""
        key = {self._position[k] for k in self.schema.key}
        return (item[0], DELETE, item[2], True, [t if p in key else None for p, t in enumerate(item[4])])

    def _stage(self, cur: Any, items: list[Item], refused: dict[int, str]) -> None:
        """The batch into the stage, in statements of a few MiB; a row whose
        value its column's type refuses is named by the server ("at row N")
        and dropped, and its statement sent again without it."""
        columns = ", ".join(f"c{p}" for p in range(len(self.schema.columns)))
        head = f"INSERT INTO {self.stage} (i, g, del, {columns}) VALUES "
        rows: list[tuple[Item, str]] = []
        size = len(head)
        for item in items:
            text = "({},{},{},{})".format(
                item[0],
                item[1],
                1 if item[3] else 0,
                ",".join("'" + t.translate(_ESCAPES) + "'" if type(t) is str else _literal(t) for t in item[4]),
            )
            # Counted in characters, but a character may take 4 bytes.
            n = 4 * len(text) + 1
            if n + len(head) > self.row_limit:
                n = len(text.encode()) + 1
            if n + len(head) > self.row_limit:
                refused[item[0]] = (
                    f"the record is {n:,} bytes as SQL, more than the server takes in one statement"
                    f" (max_allowed_packet {self.row_limit + 4096:,})"
                )
                continue
            if rows and size + n > self.statement_bytes:
                self._stage_rows(cur, head, rows, refused)
                rows, size = [], len(head)
            rows.append((item, text))
            size += n
        if rows:
            self._stage_rows(cur, head, rows, refused)

    def _stage_rows(self, cur: Any, head: str, rows: list[tuple[Item, str]], refused: dict[int, str]) -> None:
        while rows:
            cur.execute("SAVEPOINT syncwd_stage")
            try:
                cur.execute(head + ",".join(text for _, text in rows))
                return
            except pymysql.err.MySQLError as exc:
                if not is_data_error(exc):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT syncwd_stage")
                at = _AT_ROW.search(str(exc.args[1]) if len(exc.args) > 1 else "")
                if at and 0 < int(at[1]) <= len(rows):
                    bad = rows[int(at[1]) - 1]
                    refused[bad[0][0]] = self._in_target_terms(exc)
                    rows = [r for r in rows if r is not bad]
                    continue
                if len(rows) == 1:
                    refused[rows[0][0][0]] = self._in_target_terms(exc)
                    return
                middle = len(rows) // 2
                self._stage_rows(cur, head, rows[:middle], refused)
                rows = rows[middle:]

    def _in_target_terms(self, exc: pymysql.err.MySQLError) -> str:
        """The server's message about a stage row, naming the target's table
        and column instead of the stage's, without the stage's row number."""
        columns = self.schema.columns

        def column(match: re.Match[str]) -> str:
            p = int(match[2])
            return match[1] + (columns[p].name if p < len(columns) else match[0]) + match[3]

        text = describe(exc)
        text = re.sub(r"`[^`]*`\.`syncwd_stage_[0-9a-f]+`\.", f"{self.target}.", text)
        text = re.sub(r"([`'])c(\d+)([`'])", column, text)
        return re.sub(r" at row \d+(?= \[MySQL error \d+\]\Z)", "", text)

    def _replacing(
        self,
        cur: Any,
        items: list[Item],
        staged: list[Item],
        replace: dict[str, str],
        deleting: list[int],
        landed: Callable[[list[str]], set[str]],
    ) -> tuple[list[int], dict[str, str]]:
        """New rows after a delete whose replacing transaction (a landing
        token) committed already are merged as updates; the rest replace
        their old rows, and are noted before COMMIT."""
        tokens = sorted({m.partition("@")[2] for m in replace.values() if "@" in m})
        committed = landed(tokens) if tokens else set()
        done = {rid for rid, m in replace.items() if "@" in m and m.partition("@")[2] in committed}
        if done:
            again = [item[0] for item in staged if item[2] in done]
            deleting = [i for i in deleting if i not in set(again)]
        marks = {item[2]: replace[item[2]] for item in staged if item[2] in replace and item[2] not in done}
        return deleting, marks

    # --- SQL ------------------------------------------------------------------

    def _col(self, name: str) -> str:
        return f"s.c{self._position[name]}"

    def _match(self, alias: str) -> str:
        return " AND ".join(f"{alias}.{ident(k)} = {self._col(k)}" for k in self.schema.key)

    def _delete_unit(self) -> _Unit:
        return _Unit(
            [
                _Statement(
                    f"DELETE t FROM {self.target} AS t JOIN {self.stage} AS s ON {self._match('t')}"
                    " WHERE s.i IN ({idx})"
                )
            ]
        )

    def steps(self, unit: _Unit) -> list[Step]:
        """``unit``'s statements on the one stage row a block names (one_by_one.py)."""
        known = self._steps.get(id(unit))
        if known is None:
            known = [
                Step("stale" if st.returns_stale else "same" if st.counts_unchanged else "run", st.sql.format(idx=ROW))
                for st in unit.statements
            ]
            if unit.insert is not None and unit.new_rows is not None:
                known.append(Step("new", unit.insert.sql.format(idx=ROW), unit.new_rows.sql.format(idx=ROW)))
            self._steps[id(unit)] = known
        return known

    def _unit(self, columns: tuple[str, ...]) -> _Unit:
        unit = self._units.get(columns)
        if unit is None:
            unit = self._units[columns] = self._new_unit(columns)
        return unit

    def _new_unit(self, columns: tuple[str, ...]) -> _Unit:
        s = self.schema
        version = s.table.version_column if s.table.version_column in columns else None
        updates = [c for c in columns if c not in s.key]
        if version:  # assignments run in order: the version column last, so the others see the old one
            updates = [c for c in updates if c != version] + [version]
        statements: list[_Statement] = []
        if version:
            # The guard keeps a row whose stored version is newer; equal or
            # null versions are not older, so the later write wins.
            statements.append(
                _Statement(
                    f"SELECT s.i FROM {self.stage} AS s JOIN {self.target} AS t ON {self._match('t')}"
                    f" WHERE s.i IN ({{idx}}) AND t.{ident(version)} > {self._col(version)}",
                    returns_stale=True,
                )
            )
        cols = ", ".join(ident(c) for c in columns)
        values = ", ".join(self._col(c) for c in columns)
        needs = tuple(sorted(s.required - set(columns)))
        if needs or s.other_unique:
            if updates:
                guard = (
                    f" AND NOT (t.{ident(version)} IS NOT NULL AND {self._col(version)} IS NOT NULL"
                    f" AND t.{ident(version)} > {self._col(version)})"
                    if version
                    else ""
                )
                sets = ", ".join(f"t.{ident(c)} = {self._col(c)}" for c in updates)
                statements.append(
                    _Statement(
                        f"UPDATE {self.target} AS t JOIN {self.stage} AS s ON {self._match('t')} SET {sets}"
                        f" WHERE s.i IN ({{idx}}){guard}"
                    )
                )
            else:
                statements.append(_counting(self, "s.i IN ({idx})"))
            # Run only on the records that are new rows: MariaDB refuses an
            # INSERT that leaves out a NOT NULL column without default even
            # when it inserts no row.
            insert = _Statement(
                f"INSERT INTO {self.target} ({cols}) SELECT {values} FROM {self.stage} AS s WHERE s.i IN ({{idx}})"
            )
            new_rows = _Statement(
                f"SELECT s.i FROM {self.stage} AS s LEFT JOIN {self.target} AS e ON {self._match('e')}"
                f" WHERE s.i IN ({{idx}}) AND e.{ident(s.key[0])} IS NULL"
            )
            screen = constraint_screen(self, columns, guarded_update=bool(updates and version))
            return _Unit(statements, needs, new_rows, insert, screen)
        if updates:
            older = (
                f"{ident(version)} IS NOT NULL AND VALUES({ident(version)}) IS NOT NULL"
                f" AND {ident(version)} > VALUES({ident(version)})"
                if version
                else ""
            )
            action = ", ".join(
                f"{ident(c)} = IF({older}, {ident(c)}, VALUES({ident(c)}))"
                if version
                else f"{ident(c)} = VALUES({ident(c)})"
                for c in updates
            )
        else:
            statements.append(_counting(self, "s.i IN ({idx})"))
            action = f"{ident(s.key[0])} = {ident(s.key[0])}"  # no change: the row is there
        statements.append(
            _Statement(
                f"INSERT INTO {self.target} ({cols}) SELECT {values} FROM {self.stage} AS s"
                f" WHERE s.i IN ({{idx}}) ON DUPLICATE KEY UPDATE {action}"
            )
        )
        return _Unit(statements, screen=constraint_screen(self, columns, guarded_update=False))


def _counting(merger: Merger, where: str) -> _Statement:
    """Records of key columns only whose row exists: written, nothing changed."""
    return _Statement(
        f"SELECT s.i FROM {merger.stage} AS s JOIN {merger.target} AS t ON {merger._match('t')} WHERE {where}",
        counts_unchanged=True,
    )


@dataclass(frozen=True)
class _Statement:
    sql: str  # ``{idx}``: the stage indices it runs on
    returns_stale: bool = False
    counts_unchanged: bool = False


@dataclass(frozen=True)
class _Unit:
    statements: list[_Statement]
    needs: tuple[str, ...] = ()  # NOT NULL columns a new row of the group lacks
    new_rows: _Statement | None = None  # which of the records are new rows
    insert: _Statement | None = None  # run on those only, after ``statements``
    screen: ScreenSQL | None = None  # what a failed statement's records are screened with


class _Run:
    """One batch's statements inside its transaction, and the records they
    rejected (stage index -> reason) or kept out as stale."""

    # Halving goes on one record at a time, this many a block, once both
    # halves of a part fail (one_by_one.py; bench/bad_data.py's trigger cases).
    ONE_BY_ONE_CHUNK = 1000
    ONE_BY_ONE = True  # False: halving only (bench.bad_data --halving-only)

    def __init__(self, merger: Merger, cur: Any, items: list[Item]) -> None:
        self.merger = merger
        self.cur = cur
        self.items = items
        self.dead: dict[int, str] = {}
        self.stale: set[int] = set()
        self.unchanged = 0
        self._savepoints = 0
        self.one_by_one = self.ONE_BY_ONE  # False once no anonymous block runs here
        self.screened: set[int] = set()  # units whose failed records were screened
        self.columns: dict[int, tuple[str, ...]] = {}  # unit -> its group's columns

    def dead_ids(self) -> set[str]:
        return {self.items[i][2] for i in self.dead}

    def apply(self, unit: _Unit, indices: list[int], columns: tuple[str, ...] = ()) -> None:
        live = [i for i in indices if i not in self.dead]
        if len(live) > 1 and unit.screen is not None and columns in self.merger.suspects:
            # The last batch of this group held bad records: look for them first.
            found = self._screen(unit, live, columns)
            if not found:
                self.merger.suspects.discard(columns)
            live = [i for i in live if i not in found]
        self.columns[id(unit)] = columns
        if len(live) > 1 and columns in self.merger.piecemeal and self.one_by_one and self._one_by_one(unit, live):
            return  # rather than run the statement and two halves to their failure
        if live:
            self._try(unit, live)

    def _run(self, unit: _Unit, indices: list[int]) -> tuple[set[int], int]:
        idx = ",".join(str(i) for i in indices)
        stale: set[int] = set()
        unchanged = 0
        for statement in unit.statements:
            self.cur.execute(statement.sql.format(idx=idx))
            if statement.returns_stale:
                stale.update(int(row[0]) for row in self.cur.fetchall())
            if statement.counts_unchanged:
                unchanged += len(self.cur.fetchall())
        if unit.insert is not None and unit.new_rows is not None:
            new = self._select(unit.new_rows, indices)
            if new:
                self.cur.execute(unit.insert.sql.format(idx=",".join(str(i) for i in sorted(new))))
        return stale, unchanged

    def _select(self, statement: _Statement, indices: list[int]) -> set[int]:
        self.cur.execute(statement.sql.format(idx=",".join(str(i) for i in indices)))
        return {int(row[0]) for row in self.cur.fetchall()}

    def _try(self, unit: _Unit, indices: list[int]) -> None:
        if unit.needs and unit.new_rows is not None and not self.merger.schema.insert_triggers:
            # New rows of a group lacking a NOT NULL column without default
            # cannot be inserted (no trigger fills it in): dead-letter them
            # up front; the existing rows are updated.
            new = self._select(unit.new_rows, indices)
            if new:
                self.dead.update(dict.fromkeys(new, self._lacking(unit)))
                indices = [i for i in indices if i not in new]
                if not indices:
                    return
        exc = self._attempt(unit, indices)
        if exc is not None:
            self._isolate(unit, indices, exc)

    def _attempt(self, unit: _Unit, indices: list[int]) -> pymysql.err.MySQLError | None:
        """Run ``unit`` on ``indices`` in a savepoint; the error that blames
        their data, else None (then they are merged)."""
        self._savepoints += 1
        savepoint = f"syncwd_{self._savepoints}"
        self.cur.execute(f"SAVEPOINT {savepoint}")
        try:
            stale, unchanged = self._run(unit, indices)
        except pymysql.err.MySQLError as exc:
            if errno(exc) in (1054, 1146):
                raise SchemaChanged(describe(exc)) from exc
            if not is_data_error(exc):
                raise
            self.cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            return exc
        self.stale.update(stale)
        self.unchanged += unchanged
        return None

    def _one_by_one(self, unit: _Unit, indices: list[int]) -> bool:
        """Merge ``indices`` one record at a time, server-side, in chunks
        (one_by_one.py); False when no anonymous block runs here."""
        columns = self.columns.get(id(unit), ())
        failed: dict[int, str] = {}
        for start in range(0, len(indices), self.ONE_BY_ONE_CHUNK):
            chunk = indices[start : start + self.ONE_BY_ONE_CHUNK]
            if not self.one_by_one:
                if start == 0:
                    return False
                self._try(unit, chunk)  # halving, as before
                continue
            self._savepoints += 1
            savepoint = f"syncwd_{self._savepoints}"
            self.cur.execute(f"SAVEPOINT {savepoint}")
            try:
                self.cur.execute(CREATE_RESULTS)
                self.cur.execute(block(self.merger.stage, self.merger.steps(unit), chunk))
                self.cur.execute(READ_RESULTS)
                rows = self.cur.fetchall()
                self.cur.execute(CLEAR_RESULTS)
            except pymysql.err.MySQLError as exc:
                code = errno(exc)
                if code in SCHEMA:
                    raise SchemaChanged(describe(exc)) from exc
                if is_transient(exc) or code in CONFIGURATION or is_data_error(exc):
                    raise  # raised again from a record's handler: as from any statement
                # No anonymous blocks here (MySQL), or one this server will not run.
                self.cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                self.one_by_one = False
                if start == 0:
                    return False
                self._try(unit, chunk)
                continue
            for i, what, code, message in rows:
                if what == "f":
                    failed[int(i)] = f"{str(message).strip()} [MySQL error {code}]"
                elif what == "s":
                    self.stale.add(int(i))
                else:
                    self.unchanged += 1
        if failed:
            self.merger.piecemeal.add(columns)
        else:
            self.merger.piecemeal.discard(columns)
        self.dead.update(failed)
        return True

    def _screen(self, unit: _Unit, indices: list[int], columns: tuple[str, ...]) -> set[int]:
        """Dead-letter the records the screen finds; their stage indices."""
        assert unit.screen is not None
        self.screened.add(id(unit))
        self._savepoints += 1
        savepoint = f"syncwd_{self._savepoints}"
        self.cur.execute(f"SAVEPOINT {savepoint}")
        try:
            self.cur.execute(unit.screen.sql(indices))
            rows = self.cur.fetchall()
        except pymysql.err.MySQLError as exc:
            if is_transient(exc):
                raise
            # A screen this server cannot run (a MySQL that will not read a
            # temporary table twice in one statement ...): halving finds them.
            self.cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            return set()
        found = {int(i) for i, _, _ in rows}
        for i, number, values in rows:
            self.dead[int(i)] = unit.screen.reason(int(number), None if values is None else str(values))
        if found:
            self.merger.suspects.add(columns)
        return found

    @staticmethod
    def _lacking(unit: _Unit) -> str:
        return (
            f"a new row needs NOT NULL column(s) {', '.join(unit.needs)} without default, which the record does not"
            f" carry [MySQL error {NO_DEFAULT}]"
        )

    def _isolate(self, unit: _Unit, indices: list[int], exc: pymysql.err.MySQLError) -> None:
        if len(indices) > 1 and unit.screen is not None and id(unit) not in self.screened:
            # Ask the stage which records the table's constraints refuse, in
            # one statement, before halving costs statements per bad record.
            found = self._screen(unit, indices, self.columns.get(id(unit), ()))
            if found:
                rest = [i for i in indices if i not in found]
                if rest:
                    self._try(unit, rest)
                return
        if len(indices) == 1:
            self.dead[indices[0]] = describe(exc)
            return
        middle = len(indices) // 2
        left, right = indices[:middle], indices[middle:]
        left_failed = self._attempt(unit, left)
        right_failed = self._attempt(unit, right)
        if left_failed and right_failed and self.one_by_one and self._one_by_one(unit, indices):
            return  # two bad records at least: one by one costs less than halving on
        if left_failed:
            self._isolate(unit, left, left_failed)
        if right_failed:
            self._isolate(unit, right, right_failed)
