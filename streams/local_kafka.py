"""The embedded Kafka broker: one KRaft node (broker and controller in one JVM) on loopback.

DESIGN.md section 4: Java 17 and Maven are the only system needs. The jars come from Maven
Central once, into the cache dir; the broker runs detached in its own session so that it
outlives the CLI that started it. A pid file in the data dir names the process, and its
command line is checked every time, so a stale pid file (process gone, or pid reused by
another program) is never mistaken for a running broker.

The API is synchronous (it waits on a JVM for seconds); async code should call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from streams.kafka_quorum import Quorum, describe_quorum
from streams.settings import Settings, load_settings

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
NODE_ID = 1
MIN_JAVA = 17
STOP_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 10.0
MAVEN_TIMEOUT_S = 900.0

# The JVM flags of Kafka's own kafka-run-class.sh / kafka-server-start.sh.
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped; says why."""


@dataclass(frozen=True)
class BrokerStatus:
    """What `kafka status` reports about the local broker."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path


@dataclass(frozen=True)
class NodeSpec:
    """One node of a local cluster: its id, ports, home and the quorum it votes in.

    A single broker is node 1 of a cluster of one; in an N-node cluster every node is broker
    and controller (``process.roles=broker,controller``), all of them voters.
    """

    node_id: int
    port: int
    controller_port: int
    home: Path
    voters: str
    """``controller.quorum.voters``: ``id@host:port`` of every controller, comma-separated."""
    nodes: int = 1
    cluster_id_file: Path | None = None
    """Where the cluster id is kept (shared by every node); None: ``home/cluster.id``."""

    @property
    def replication_factor(self) -> int:
        """Internal topics' and new topics' default: every node up to 3."""
        return min(3, self.nodes)

    @property
    def min_insync_replicas(self) -> int:
        """2 of 3: a write survives one node lost and is refused when only one is left."""
        return max(1, self.replication_factor - 1)


def single_node(settings: Settings, home: Path) -> NodeSpec:
    host, cport = settings.kafka_host, settings.kafka_controller_port
    return NodeSpec(NODE_ID, settings.kafka_port, cport, home, f"{NODE_ID}@{host}:{cport}")


def broker_properties(
    settings: Settings, home: Path, node: NodeSpec | None = None
) -> dict[str, str]:
    """server.properties of one node, tuned for a dev box and for tests.

    Replication factors are those of the cluster (1 for one node; 3 and
    ``min.insync.replicas=2`` for three or more), internal topics included; internal topics
    have few partitions so that the first consumer group or transaction starts fast; topics
    are never auto-created, so a typo in a topic name fails instead of silently creating a
    topic.
    """
    node = node or single_node(settings, home)
    host, port, cport = settings.kafka_host, node.port, node.controller_port
    rf, min_isr = str(node.replication_factor), str(node.min_insync_replicas)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": node.voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(home / "data"),
        "num.partitions": str(settings.partitions),
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "share.coordinator.state.topic.num.partitions": "4",
        # A node of a cluster registers once a majority of the quorum runs: on a loaded box
        # the others' JVMs may take longer than Kafka's 60 s, and the node then exits.
        "initial.broker.registration.timeout.ms": str(
            max(60_000, int(settings.kafka_start_timeout_s * 1000))
        ),
        # A dev broker's disk is small: keep a day of data and small segments.
        "log.retention.hours": "24",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }


async def _answers_metadata(bootstrap: str, timeout_s: float) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000)), timeout_s
        )
    except (TimeoutError, OSError, KafkaError):
        return False
    try:
        response = await conn.send(MetadataRequest([]))
        return bool(response.brokers)
    except (TimeoutError, OSError, KafkaError):
        return False
    finally:
        conn.close()


def probe(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request with its brokers.

    An open port is not enough: the broker accepts connections before it can serve.
    Synchronous: from async code, call it (and ``LocalKafka.up``/``down``) through
    ``asyncio.to_thread``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_answers_metadata(bootstrap, timeout_s))
    raise RuntimeError(
        "probe() blocks: call it (or LocalKafka.up/down) through asyncio.to_thread in async code"
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None when it is gone or a zombie (empty cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
        out = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or None
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None


def _port_free(host: str, port: int) -> bool:
    """Whether the broker could bind the port (SO_REUSEADDR, as the JVM sets it)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise LocalKafkaError(f"cannot tell the version of {java}:\n{out.stderr.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if not java:
        raise LocalKafkaError(
            f"java not found: the local Kafka broker needs Java {MIN_JAVA}+ "
            "(install a JDK/JRE, or set JAVA_HOME), or set TURNSTREAM_KAFKA_BOOTSTRAP "
            "to use an existing cluster"
        )
    major = _java_major(java)
    if major < MIN_JAVA:
        raise LocalKafkaError(f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA}+")
    return java


def _new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding (as StorageTool makes)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka avoids these: they read as CLI options
            return cid


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Serialise fetch/start/stop across processes (CLI, test sessions) on one directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Brokers started by this Python process, by config file (one per data dir): kept so that
# they are reaped (a zombie must not look alive) and Popen does not warn on collection.
_children: dict[Path, subprocess.Popen[bytes]] = {}


LOOPBACK = "127.0.0.1"


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
TEST_PORTS_FROM = 20000
"""Test ports start here: above the project's default ports (9464, 18080, 18124, 19092/3)."""
PORT_LEASE_S = 600.0
"""A port :func:`free_ports` handed out is not handed out again, to any process, for this long."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _test_port_ranges() -> list[range]:
    """Where test brokers' ports come from: below the ephemeral range, else above it."""
    low, high = _ephemeral_range()
    ranges = [range(TEST_PORTS_FROM, low), range(max(high + 1, TEST_PORTS_FROM), 65536)]
    return [r for r in ranges if len(r) >= 1000]


def _bindable(host: str, port: int) -> bool:
    """Whether nothing holds the port (no SO_REUSEADDR: a TIME_WAIT socket counts too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports, free now, outside the ephemeral range (tests, benches).

    An ephemeral port is the one a client's outgoing connection may get: with a broker down
    on such a port, a reconnecting client once connected the socket to itself (TCP
    simultaneous open on loopback) and the broker could not bind its port again for minutes
    (issue 20). So the ports come from below ``ip_local_port_range`` (or above it), at a
    random place, each checked by a bind; a lease file under a lock keeps parallel test
    processes from taking the same port for :data:`PORT_LEASE_S`. Where the range leaves no
    room, the OS picks (bind to port 0) as before."""
    ranges = _test_port_ranges()
    if not ranges:
        return _os_ports(count, host)
    leases_file = Path(tempfile.gettempdir()) / "turnstream-port-leases.json"
    candidates = [port for r in ranges for port in r]
    start = random.randrange(len(candidates))
    with _flock(leases_file.with_suffix(".lock")):
        now = time.time()
        try:
            leases = {int(p): float(t) for p, t in json.loads(leases_file.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            leases = {}
        leases = {p: t for p, t in leases.items() if t > now}
        ports: list[int] = []
        for i in range(len(candidates)):
            port = candidates[(start + i) % len(candidates)]
            if port not in leases and _bindable(host, port):
                ports.append(port)
                leases[port] = now + PORT_LEASE_S
                if len(ports) == count:
                    break
        else:
            raise LocalKafkaError(f"no {count} free ports in {ranges}")
        tmp = leases_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({str(p): t for p, t in leases.items()}))
        tmp.replace(leases_file)
    return ports


def _os_ports(count: int, host: str) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def private_broker_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a private local broker in ``data_dir`` on free loopback ports (tests,
    benches): never the cluster ``TURNSTREAM_KAFKA_BOOTSTRAP`` names."""
    port, controller_port = free_ports(2)
    return load_settings(
        kafka_bootstrap=None,
        kafka_host=LOOPBACK,
        kafka_port=port,
        kafka_controller_port=controller_port,
        data_dir=data_dir,
        **overrides,
    )


def private_local_cluster(data_dir: Path, nodes: int = 3, **overrides: Any) -> LocalCluster:
    """A private N-node cluster in ``data_dir`` on free loopback ports (tests, benches); its
    :meth:`LocalCluster.client_settings` name it, never ``TURNSTREAM_KAFKA_BOOTSTRAP``'s."""
    ports = free_ports(2 * nodes)
    settings = load_settings(
        kafka_bootstrap=None,
        kafka_host=LOOPBACK,
        kafka_port=ports[0],
        kafka_controller_port=ports[1],
        data_dir=data_dir,
        **overrides,
    )
    return LocalCluster(settings, nodes, list(zip(ports[::2], ports[1::2], strict=True)))


class LocalKafka:
    """Fetch, format, start, stop and inspect the local broker of one data dir."""

    def __init__(self, settings: Settings, node: NodeSpec | None = None) -> None:
        self.settings = settings
        self.node = node or single_node(settings, settings.data_dir / "kafka")
        self.home = self.node.home
        self.jar_root = settings.cache_dir / f"kafka-{settings.kafka_version}"
        self.libs = self.jar_root / "libs"
        self.properties_file = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"
        self.log_dir = self.home / "logs"
        self.log_file = self.log_dir / "server.log"
        self.stdout_file = self.log_dir / "stdout.log"

    @property
    def bootstrap(self) -> str:
        """The local broker's address (never the external ``kafka_bootstrap``)."""
        return f"{self.settings.kafka_host}:{self.node.port}"

    def status(self) -> BrokerStatus:
        """Whether this data dir's broker process is alive (read-only: fixes nothing)."""
        pid = self._running_pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            data_dir=self.home,
            log_file=self.log_file,
        )

    def up(self) -> str:
        """Start the broker unless it runs already; return its bootstrap once it serves."""
        self.ensure_running()
        return self.bootstrap

    def ensure_running(self) -> bool:
        """Start the broker unless it runs already, and wait until it serves. True when this
        call started it (so the caller should stop it), False when it was running (or
        starting: then this waits for it too)."""
        with _flock(self.home / ".lock"):
            pid = self.spawn()
            if pid is None:
                self._wait_ready(self._running_pid_or_fail(), started_here=False)
                return False
            self._wait_ready(pid, started_here=True)
            return True

    def spawn(self) -> int | None:
        """Start the JVM unless it runs already, without waiting for it to serve (a node of
        a cluster cannot serve before a majority of its quorum runs); its pid, or None when
        it was running. The caller holds the node's lock or accepts a race."""
        if self._running_pid() is not None:
            return None
        if self.pid_file.exists():
            log.info("removing stale pid file %s", self.pid_file)
            self.pid_file.unlink()
        self._check_ports()
        java = _find_java()
        libs = self.fetch_jars()
        self._write_config()
        self._format_storage(java, libs)
        return self._spawn(java, libs)

    def _running_pid_or_fail(self) -> int:
        pid = self._running_pid()
        if pid is None:
            raise LocalKafkaError(f"the Kafka broker of {self.home} exited\n{self._log_tails()}")
        return pid

    def wait_ready(self, pid: int, started_here: bool = True) -> None:
        """Wait until the node answers metadata (see :meth:`spawn`)."""
        self._wait_ready(pid, started_here)

    def kill(self) -> int | None:
        """SIGKILL the node (no controlled shutdown: a crash); its pid, None if none ran."""
        with _flock(self.home / ".lock"):
            pid = self._running_pid()
            if pid is None:
                return None
            self._kill(pid)
            return pid

    def down(self) -> bool:
        """Stop the broker (controlled shutdown, SIGKILL after a timeout); False if none ran."""
        with _flock(self.home / ".lock"):
            pid = self._running_pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            self._signal_group(pid, signal.SIGTERM)
            if not self._wait_gone(pid, STOP_TIMEOUT_S):
                log.warning(
                    "broker pid %d ignored SIGTERM for %.0f s: killing", pid, STOP_TIMEOUT_S
                )
            self._kill(pid)
            return True

    def fetch_jars(self) -> Path:
        """The broker's jars: fetched from Maven Central on first use, then reused.

        A marker written after a complete fetch makes an interrupted fetch start over.
        """
        marker = self.jar_root / "libs.complete"
        if marker.is_file():
            return self.libs
        with _flock(self.jar_root / ".lock"):
            if marker.is_file():  # fetched by another process while we waited
                return self.libs
            mvn = shutil.which("mvn")
            if not mvn:
                raise LocalKafkaError(
                    "mvn not found: the local Kafka broker's jars are fetched with Maven "
                    f"into {self.libs} (install Maven 3.6+), or set TURNSTREAM_KAFKA_BOOTSTRAP "
                    "to use an existing cluster"
                )
            partial = self.jar_root / "libs.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(self.libs, ignore_errors=True)
            pom = self.jar_root / "pom.xml"
            pom.write_text(_package_file("pom.xml"))
            command = [
                mvn, "-B", "-ntp", "-f", str(pom),
                f"-Dkafka.version={self.settings.kafka_version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={partial}",
                "-DincludeScope=runtime",
            ]  # fmt: skip
            log.info("fetching Kafka %s jars with Maven", self.settings.kafka_version)
            try:
                done = subprocess.run(
                    command,
                    cwd=self.jar_root,
                    capture_output=True,
                    text=True,
                    timeout=MAVEN_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise LocalKafkaError(
                    f"Maven did not finish fetching the Kafka jars in {MAVEN_TIMEOUT_S:.0f} s"
                ) from exc
            jars = list(partial.glob("*.jar")) if partial.is_dir() else []
            if done.returncode != 0 or not jars:
                output = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
                raise LocalKafkaError(
                    f"fetching Kafka {self.settings.kafka_version} jars failed "
                    f"(mvn exit {done.returncode}): {' '.join(command)}\n{output}"
                )
            partial.rename(self.libs)
            marker.write_text(f"{len(jars)} jars\n")
            return self.libs

    def _running_pid(self) -> int | None:
        """The pid in the pid file if that process is this data dir's broker, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_broker(pid) else None

    def _is_broker(self, pid: int) -> bool:
        """Whether pid is this data dir's broker, alive (a zombie is not).

        A child of ours is asked directly: right after exec, /proc/PID/cmdline can still read
        empty for a moment, and a child that exited is reaped here.
        """
        child = _children.get(self.properties_file)
        if child is not None and child.pid == pid:
            if child.poll() is None:
                return True
            del _children[self.properties_file]
            return False
        cmdline = _cmdline(pid) or ""
        return MAIN_CLASS in cmdline and str(self.properties_file) in cmdline

    def _check_ports(self) -> None:
        host = self.settings.kafka_host
        for name, port in (
            ("TURNSTREAM_KAFKA_PORT", self.node.port),
            ("TURNSTREAM_KAFKA_CONTROLLER_PORT", self.node.controller_port),
        ):
            if not _port_free(host, port):
                raise LocalKafkaError(
                    f"port {host}:{port} is already in use by another process (not the broker "
                    f"of {self.home}); stop that process or choose another port with {name}"
                )

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = broker_properties(self.settings, self.home, self.node)
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(_package_file("log4j2.properties"))

    def _format_storage(self, java: str, libs: Path) -> None:
        """Format the KRaft log dir once; the cluster id is kept next to it."""
        if (self.home / "data" / "meta.properties").is_file():
            return
        id_file = self.node.cluster_id_file or self.home / "cluster.id"
        cluster_id = id_file.read_text().strip() if id_file.is_file() else _new_cluster_id()
        id_file.write_text(cluster_id + "\n")
        command = [
            java, *self._log_opts(), "-cp", f"{libs}/*", "kafka.tools.StorageTool",
            "format", "-t", cluster_id, "-c", str(self.properties_file), "--ignore-formatted",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LocalKafkaError(
                f"formatting Kafka storage in {self.home / 'data'} failed "
                f"(exit {done.returncode}):\n{(done.stdout + done.stderr).strip()}"
            )

    def _log_opts(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            # Else log4j closes its file in its own shutdown hook, mid-way through Kafka's.
            "-Dlog4j2.shutdownHookEnabled=false",
        ]

    def _spawn(self, java: str, libs: Path) -> int:
        command = [
            java, f"-Xmx{self.settings.kafka_heap}", *_JVM_OPTS, *self._log_opts(),
            "-cp", f"{libs}/*", MAIN_CLASS, str(self.properties_file),
        ]  # fmt: skip
        with self.stdout_file.open("wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _children[self.properties_file] = proc
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{proc.pid}\n")
        tmp.replace(self.pid_file)
        return proc.pid

    def _wait_ready(self, pid: int, started_here: bool) -> None:
        """Wait for a metadata answer; if the broker dies or the deadline passes, fail loudly.

        A broker this call started is killed on timeout; one found running is left alone.
        """
        timeout_s = self.settings.kafka_start_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._is_broker(pid):
                self._kill(pid)
                raise LocalKafkaError(
                    f"the Kafka broker (pid {pid}) exited during start-up\n{self._log_tails()}"
                )
            if probe(self.bootstrap, timeout_s=2.0):
                return
            if time.monotonic() > deadline:
                if started_here:
                    self._kill(pid)
                fate = "killed it" if started_here else "`turnstream kafka down` stops it"
                raise LocalKafkaError(
                    f"the Kafka broker (pid {pid}) did not answer on {self.bootstrap} within "
                    f"{timeout_s:.0f} s ({fate})\n{self._log_tails()}"
                )
            time.sleep(0.1)

    def _log_tails(self) -> str:
        parts = [
            f"--- {path} (last lines) ---\n{text}"
            for path in (self.stdout_file, self.log_file)
            if (text := _tail(path))
        ]
        return "\n".join(parts) or f"(no output in {self.log_dir})"

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        """The broker leads its own process group: signal all of it, leave nothing behind."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._is_broker(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill(self, pid: int) -> None:
        """SIGKILL what is left of the group, reap our child, remove the pid file."""
        self._signal_group(pid, signal.SIGKILL)
        if not self._wait_gone(pid, KILL_TIMEOUT_S):
            raise LocalKafkaError(f"the Kafka broker (pid {pid}) survived SIGKILL")
        child = _children.get(self.properties_file)
        if child is not None and child.pid == pid:
            child.wait(timeout=KILL_TIMEOUT_S)
            del _children[self.properties_file]
        self.pid_file.unlink(missing_ok=True)


CLUSTER_DIR = "kafka-cluster"
CLUSTER_FILE = "cluster.json"
PORT_STRIDE = 2
"""Node i of a cluster laid out from the settings listens on ``kafka_port + 2*i`` and
``kafka_controller_port + 2*i``: 19092/19093, 19094/19095, 19096/19097 by default."""
IN_SYNC_TIMEOUT_S = 120.0


class Role(StrEnum):
    """Which node of a cluster to find (and kill)."""

    PARTITION_LEADER = "partition_leader"
    CONTROLLER = "controller"
    COORDINATOR = "coordinator"


def cluster_ports(settings: Settings, nodes: int) -> list[tuple[int, int]]:
    """(broker port, controller port) of each node, laid out from the settings."""
    ports = [
        (settings.kafka_port + PORT_STRIDE * i, settings.kafka_controller_port + PORT_STRIDE * i)
        for i in range(nodes)
    ]
    flat = [port for pair in ports for port in pair]
    if len(set(flat)) != len(flat) or max(flat) > 65535:
        raise LocalKafkaError(
            f"a {nodes}-node cluster needs distinct ports kafka_port+2i and "
            f"kafka_controller_port+2i (i < {nodes}); kafka_port={settings.kafka_port}, "
            f"kafka_controller_port={settings.kafka_controller_port} give {flat}"
        )
    return ports


class LocalCluster:
    """N local KRaft nodes, each broker and controller, on loopback, from the same jars.

    Each node is a :class:`LocalKafka` with its own home (``<data_dir>/kafka-cluster/node<id>``),
    pid file and log; all are voters of one metadata quorum and share one cluster id.
    Replication factor 3 (every node up to 3) and ``min.insync.replicas=2``. The nodes can be
    found by role (a partition's leader, the active controller, a group's coordinator),
    SIGKILLed and started again: the failover tests and ``bench/chaos.py --cluster``.

    Clients and workers need ``kafka_bootstrap=cluster.bootstrap`` (every node, so that a
    client starting while one is down finds another) and ``replication_factor=3``:
    :meth:`client_settings`.
    """

    def __init__(
        self,
        settings: Settings,
        nodes: int = 3,
        ports: list[tuple[int, int]] | None = None,
    ) -> None:
        if nodes < 1:
            raise LocalKafkaError("a cluster needs at least one node")
        self.settings = settings
        self.root = settings.data_dir / CLUSTER_DIR
        self.ports = ports or cluster_ports(settings, nodes)
        if len(self.ports) != nodes:
            raise LocalKafkaError(f"{nodes} nodes need {nodes} port pairs, got {len(self.ports)}")
        host = settings.kafka_host
        voters = ",".join(f"{i + 1}@{host}:{cport}" for i, (_, cport) in enumerate(self.ports))
        self.nodes: dict[int, LocalKafka] = {
            i + 1: LocalKafka(
                settings,
                NodeSpec(
                    node_id=i + 1,
                    port=port,
                    controller_port=cport,
                    home=self.root / f"node{i + 1}",
                    voters=voters,
                    nodes=nodes,
                    cluster_id_file=self.root / "cluster.id",
                ),
            )
            for i, (port, cport) in enumerate(self.ports)
        }

    @classmethod
    def recorded(cls, settings: Settings) -> LocalCluster | None:
        """The cluster ``turnstream kafka up --nodes N`` started in this data dir, if any."""
        try:
            spec = json.loads((settings.data_dir / CLUSTER_DIR / CLUSTER_FILE).read_text())
            ports = [(int(a), int(b)) for a, b in spec["ports"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(settings, len(ports), ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    @property
    def replication_factor(self) -> int:
        return next(iter(self.nodes.values())).node.replication_factor

    def client_settings(self, **overrides: Any) -> Settings:
        """Settings whose clients, workers and topic creation use this cluster."""
        values: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "replication_factor": self.replication_factor,
        }
        values.update(overrides)
        return self.settings.model_copy(update=values)

    def node_of(self, node_id: int) -> LocalKafka:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise LocalKafkaError(f"no node {node_id} (nodes {sorted(self.nodes)})") from None

    def running(self) -> list[int]:
        return [nid for nid, node in self.nodes.items() if node.status().running]

    # -- lifecycle ------------------------------------------------------------------------

    def up(self) -> str:
        """Start every node that is not running, then wait until all serve and every broker
        is registered; return the bootstrap (every node)."""
        with _flock(self.root / ".lock"):
            self.root.mkdir(parents=True, exist_ok=True)
            record = {"nodes": len(self.nodes), "ports": [list(p) for p in self.ports]}
            (self.root / CLUSTER_FILE).write_text(json.dumps(record) + "\n")
            spawned = {nid: node.spawn() for nid, node in self.nodes.items()}
            for nid, pid in spawned.items():
                node = self.nodes[nid]
                if pid is None:
                    node.wait_ready(node._running_pid_or_fail(), started_here=False)
                else:
                    node.wait_ready(pid, started_here=True)
        self.wait_registered()
        return self.bootstrap

    def down(self) -> bool:
        """Stop every node (controlled shutdown, all at once); False when none ran."""
        stopped = [False] * len(self.nodes)

        def stop(i: int, node: LocalKafka) -> None:
            stopped[i] = node.down()

        threads = [
            threading.Thread(target=stop, args=(i, node))
            for i, node in enumerate(self.nodes.values())
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return any(stopped)

    def kill(self, node_id: int) -> int | None:
        """SIGKILL one node; its pid, or None when it was not running."""
        return self.node_of(node_id).kill()

    def stop(self, node_id: int) -> bool:
        """Stop one node with a controlled shutdown (its leaderships move first)."""
        return self.node_of(node_id).down()

    def start(self, node_id: int) -> None:
        """Start one node again on its data dir and wait until it serves."""
        self.node_of(node_id).ensure_running()

    def wait_registered(self, timeout_s: float | None = None) -> None:
        """Wait until the metadata of a live node lists every running node as a broker."""
        timeout_s = timeout_s or self.settings.kafka_start_timeout_s
        deadline = time.monotonic() + timeout_s
        want = set(self.running())
        while True:
            have = asyncio.run(self._brokers())
            if want <= have:
                return
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"brokers {sorted(want - have)} not registered after {timeout_s:.0f} s"
                )
            time.sleep(0.2)

    def wait_in_sync(self, timeout_s: float = IN_SYNC_TIMEOUT_S) -> float:
        """Wait until every partition of every topic has all its replicas in sync and the
        metadata quorum is caught up (after a node came back: before the next is stopped);
        the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            lagging = asyncio.run(self._lagging())
            if not lagging:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"not in sync after {timeout_s:.0f} s: {', '.join(lagging[:5])}"
                )
            time.sleep(0.5)

    # -- roles ----------------------------------------------------------------------------

    async def active_controller(self, timeout_s: float | None = None) -> int:
        """The node id of the metadata quorum's leader, asked of each live controller until
        one names a leader (an election may be running: it waits for it)."""
        deadline = time.monotonic() + (timeout_s or self.settings.kafka_start_timeout_s)
        while True:
            for quorum in await self._quorums():
                if quorum.leader_id in self.nodes:
                    return quorum.leader_id
            if time.monotonic() > deadline:
                raise LocalKafkaError("no controller leads the metadata quorum")
            await asyncio.sleep(0.2)

    async def partition_leader(self, topic: str, partition: int) -> int:
        """The node id that leads ``topic``-``partition`` now."""
        async with self.admin() as admin:
            for described in await admin.describe_topics([topic]):
                for part in described.get("partitions", []):
                    if part["partition"] == partition and part["leader"] in self.nodes:
                        return int(part["leader"])
        raise LocalKafkaError(f"{topic}-{partition} has no leader")

    async def group_coordinator(self, group_id: str) -> int:
        """The node id coordinating consumer group ``group_id``."""
        deadline = time.monotonic() + self.settings.kafka_start_timeout_s
        async with self.admin() as admin:
            while True:
                try:
                    return int(await admin.find_coordinator(group_id))
                except KafkaError as exc:  # the offsets topic is created on first ask
                    if not exc.retriable or time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.2)

    async def find(
        self, role: Role, *, topic: str = "", partition: int = 0, group: str = ""
    ) -> int:
        if role is Role.CONTROLLER:
            return await self.active_controller()
        if role is Role.PARTITION_LEADER:
            return await self.partition_leader(topic, partition)
        return await self.group_coordinator(group)

    # -- internals ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        live = [self.nodes[nid].bootstrap for nid in self.running()] or [self.bootstrap]
        admin = AIOKafkaAdminClient(bootstrap_servers=",".join(live), request_timeout_ms=10_000)
        await admin.start()
        try:
            yield admin
        finally:
            await admin.close()

    async def _quorums(self) -> list[Quorum]:
        host = self.settings.kafka_host
        found = []
        for nid in self.running():
            with contextlib.suppress(OSError, TimeoutError, KafkaError):
                found.append(await describe_quorum(host, self.nodes[nid].node.controller_port))
        return found

    async def _brokers(self) -> set[int]:
        for nid in self.running():
            host, _, port = self.nodes[nid].bootstrap.rpartition(":")
            try:
                conn = await asyncio.wait_for(create_conn(host, int(port)), 3.0)
            except (TimeoutError, OSError, KafkaError):
                continue
            try:
                response: Any = await conn.send(MetadataRequest([]))
                return {int(broker[0]) for broker in response.brokers}
            except (TimeoutError, OSError, KafkaError):
                continue
            finally:
                conn.close()
        return set()

    async def _lagging(self) -> list[str]:
        """Partitions (and the quorum) not fully in sync, as text; [] when all are."""
        lagging: list[str] = []
        quorums = await self._quorums()
        if not any(q.caught_up() and set(q.voters) == set(self.nodes) for q in quorums):
            lagging.append("metadata quorum")
        try:
            async with self.admin() as admin:
                topics = await admin.describe_topics()
        except KafkaError as exc:
            return [*lagging, f"metadata ({exc!r})"]
        for described in topics:
            for part in described.get("partitions", []):
                if set(part["isr"]) != set(part["replicas"]):
                    lagging.append(f"{described['topic']}-{part['partition']}")
        return lagging


def _package_file(name: str) -> str:
    return resources.files("streams").joinpath("kafka", name).read_text()
