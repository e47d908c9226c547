"""Finding a Redis and a PostgreSQL to talk to, or starting throwaway ones
from the binaries on PATH (used by the demo, the tests and the bench).

A throwaway server lives in its own temporary directory on a free port and is
removed with it; nothing else on the machine is touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, TypeVar

INSTALL_HINT = (
    "install Redis and PostgreSQL (Debian/Ubuntu: apt-get install redis-server postgresql; "
    "macOS: brew install redis postgresql), or point SYNCWD_REDIS_URL / SYNCWD_DSN at running servers"
)


class ServerUnavailable(RuntimeError):
    pass


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(cluster_bus: bool = False) -> int:
    """A free port; with ``cluster_bus``, one whose +10000 (Redis Cluster's bus) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port
        port = 0


def redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def postgres_reachable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except Exception:
        return False


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not come up within {timeout:.0f}s")


class RedisServer:
    """A private redis-server: ``RedisServer(appendonly=True).start()``."""

    def __init__(
        self, port: int | None = None, appendonly: bool = False, cluster: bool = False, extra_args: tuple[str, ...] = ()
    ) -> None:
        binary = _which("redis-server")
        if not binary:
            raise ServerUnavailable("redis-server not found on PATH; " + INSTALL_HINT)
        self.binary: str = binary
        self.port = port or free_port(cluster_bus=cluster)
        self.appendonly = appendonly
        self.cluster = cluster
        self.extra_args = extra_args  # e.g. ("--rename-command", "CONFIG", "")
        self.dir = tempfile.mkdtemp(prefix="syncwd-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--repl-diskless-sync-delay",  # a replica syncs at once, not after 5 s
                "0",
                "--cluster-replica-validity-factor",  # a replica may always take over, however long its link was down
                "0",
            ]
        args += ["--logfile", os.path.join(self.dir, "log"), *self.extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            if self.process and self.process.poll() is not None:
                with open(os.path.join(self.dir, "log"), errors="replace") as log:
                    raise ServerUnavailable(f"redis-server on port {self.port} exited: {log.read()[-500:]}")
            return redis_reachable(self.url)

        _wait(up, f"redis-server on port {self.port}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(30)
        self.process = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_S = TypeVar("_S", bound="_Servers")


class _Servers:
    """Servers started together: ``_start`` starts them, ``close`` stops
    whichever started; a start that fails part-way stops what it started."""

    def start(self: _S) -> _S:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterServers(_Servers):
    """A throwaway Redis Cluster of ``masters`` nodes, each with ``replicas``
    replicas (none by default). Which node becomes a master is redis-cli's
    choice: ask the cluster (CLUSTER NODES) rather than rely on the order."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        cli = _which("redis-cli")
        if not cli:
            raise ServerUnavailable("redis-cli not found on PATH; " + INSTALL_HINT)
        self.cli: str = cli
        self.replicas = replicas
        self.nodes = [RedisServer(cluster=True) for _ in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise ServerUnavailable(f"redis-cli --cluster create failed: {created.stdout} {created.stderr}")

        def ask(node: RedisServer, *command: str) -> str:
            return subprocess.run(
                [self.cli, "-p", str(node.port), *command], capture_output=True, text=True, timeout=10
            ).stdout

        def ready() -> bool:
            replicas = len(self.nodes) - len(self.nodes) // (1 + self.replicas)
            for node in self.nodes:  # every node sees the whole cluster, every replica is in sync
                if "cluster_state:ok" not in ask(node, "cluster", "info"):
                    return False
                flags = [line.split()[2].split(",") for line in ask(node, "cluster", "nodes").splitlines() if line]
                if sum("slave" in f for f in flags) != replicas:
                    return False
                role = ask(node, "info", "replication")
                if "role:slave" in role and "master_link_status:up" not in role:
                    return False
            return True

        _wait(ready, "the Redis Cluster")

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class RedisSentinelServers(_Servers):
    """A throwaway master, ``replicas`` replicas and ``sentinels`` sentinels
    (quorum 2) monitoring it as ``service``, quick to fail over: a master is
    down after 1 s, a failover is tried again after 5 s. Which server is the
    master changes with a failover: ask the sentinels (``master()``)."""

    def __init__(
        self, service: str = "syncwd", replicas: int = 1, sentinels: int = 3, sentinel_password: str | None = None
    ) -> None:
        self.service = service
        self.sentinel_password = sentinel_password
        self.servers = [RedisServer(extra_args=("--repl-diskless-sync-delay", "0")) for _ in range(1 + replicas)]
        self.sentinels = [RedisServer(extra_args=()) for _ in range(sentinels)]

    @property
    def addresses(self) -> str:
        """The sentinels as --sentinel takes them: host:port,host:port,..."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    @property
    def url(self) -> str:
        """The same as a redis+sentinel:// URL (database 0)."""
        return f"redis+sentinel://{self.addresses}/{self.service}/0"

    def _start(self) -> None:
        import redis

        master = self.servers[0]
        for server in self.servers:
            if server is not master:
                server.extra_args += ("--replicaof", "127.0.0.1", str(master.port))
            server.start()
        for sentinel in self.sentinels:
            conf = os.path.join(sentinel.dir, "sentinel.conf")  # sentinel rewrites it: a file of its own
            with open(conf, "w") as f:
                f.write(
                    f"port {sentinel.port}\nbind 127.0.0.1\ndir {sentinel.dir}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                    + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
                )
            sentinel.process = subprocess.Popen(
                [sentinel.binary, conf, "--sentinel", "--logfile", os.path.join(sentinel.dir, "log")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def ready() -> bool:  # every sentinel sees the master, the replicas and the other sentinels
            for sentinel in self.sentinels:
                try:
                    client = redis.Redis(port=sentinel.port, password=self.sentinel_password, socket_timeout=2)
                    with client:
                        state: Any = client.sentinel_master(self.service)
                except redis.RedisError:
                    return False
                if (
                    state["num-slaves"] < len(self.servers) - 1
                    or state["num-other-sentinels"] < len(self.sentinels) - 1
                ):
                    return False
            for server in self.servers[1:]:
                with redis.Redis(port=server.port, socket_timeout=2) as client:
                    if client.info("replication").get("master_link_status") != "up":
                        return False
            return True

        _wait(ready, "the Redis sentinels", timeout=60)

    def master(self) -> RedisServer:
        """The server the sentinels name master now."""
        import redis

        for sentinel in self.sentinels:
            try:
                with redis.Redis(port=sentinel.port, password=self.sentinel_password, socket_timeout=2) as client:
                    _, port = client.sentinel_get_master_addr_by_name(self.service)
            except (redis.RedisError, TypeError):
                continue
            for server in self.servers:
                if server.port == int(port):
                    return server
        raise ServerUnavailable(f"no sentinel names a master of {self.service}")

    def close(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.close()


class PostgresServer:
    """A private PostgreSQL cluster (as the ``postgres`` user when run as root,
    since PostgreSQL refuses to run as root)."""

    def __init__(self, port: int | None = None) -> None:
        initdb, pg_ctl = _which("initdb"), _which("pg_ctl")
        if not (initdb and pg_ctl):
            raise ServerUnavailable("initdb/pg_ctl not found on PATH; " + INSTALL_HINT)
        self.initdb: str = initdb
        self.pg_ctl: str = pg_ctl
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="syncwd-pg-")
        self.data = os.path.join(self.dir, "data")
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)
            os.chmod(self.dir, 0o700)
        self._initialized = False

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)
        return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)

    def start(self) -> PostgresServer:
        if not self._initialized:
            try:
                self._run(self.initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            except subprocess.CalledProcessError as exc:
                raise ServerUnavailable(f"initdb failed: {exc.stdout.decode(errors='replace')}") from exc
            self._initialized = True
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=50"
        result = self._run(
            self.pg_ctl, "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start", check=False
        )
        if result.returncode != 0:
            raise ServerUnavailable(f"pg_ctl start failed: {result.stdout.decode(errors='replace')}")
        _wait(lambda: postgres_reachable(self.dsn), f"PostgreSQL on port {self.port}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        if self._initialized:
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=postgres"


def find_or_start(redis_url: str | None, dsn: str | None) -> tuple[str, str, list[Any]]:
    """The given servers, else the local ones on their default ports, else
    throwaway ones. Returns (redis url, dsn, servers to close afterwards)."""
    started: list[Any] = []
    if not redis_url:
        if redis_reachable(DEFAULT_REDIS_URL):
            redis_url = DEFAULT_REDIS_URL
        else:
            started.append(RedisServer().start())
            redis_url = started[-1].url
    if not dsn:
        if postgres_reachable(DEFAULT_DSN):
            dsn = DEFAULT_DSN
        else:
            started.append(PostgresServer().start())
            dsn = started[-1].dsn
    return redis_url, dsn, started
