"""The built-in MariaDB/MySQL sink (``pip install 'syncwd-fast[mysql]'``,
driver PyMySQL): the stage and merge (merge.py), the typing rule
(render.py), information_schema (schema.py), strict sessions
(connection.py) and the server's errors sorted (faults.py)."""

from .sink import MySQLSink

__all__ = ["MySQLSink"]
