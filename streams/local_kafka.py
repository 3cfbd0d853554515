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
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

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


def broker_properties(settings: Settings, home: Path) -> dict[str, str]:
    """server.properties of the single node, tuned for a dev box and for tests.

    Replication factors are 1 (one node); internal topics have few partitions so that the
    first consumer group or transaction starts fast; topics are never auto-created, so a typo
    in a topic name fails instead of silently creating a topic.
    """
    host, port, cport = settings.kafka_host, settings.kafka_port, settings.kafka_controller_port
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{cport}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(home / "data"),
        "num.partitions": str(settings.partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "4",
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


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ports the OS has just handed out: free now, and unlikely to be taken again soon."""
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


class LocalKafka:
    """Fetch, format, start, stop and inspect the local broker of one data dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir / "kafka"
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
        return f"{self.settings.kafka_host}:{self.settings.kafka_port}"

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
            pid = self._running_pid()
            if pid is not None:
                self._wait_ready(pid, started_here=False)
                return False
            if self.pid_file.exists():
                log.info("removing stale pid file %s", self.pid_file)
                self.pid_file.unlink()
            self._check_ports()
            java = _find_java()
            libs = self.fetch_jars()
            self._write_config()
            self._format_storage(java, libs)
            self._start(java, libs)
            return True

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
            ("TURNSTREAM_KAFKA_PORT", self.settings.kafka_port),
            ("TURNSTREAM_KAFKA_CONTROLLER_PORT", self.settings.kafka_controller_port),
        ):
            if not _port_free(host, port):
                raise LocalKafkaError(
                    f"port {host}:{port} is already in use by another process (not the broker "
                    f"of {self.home}); stop that process or choose another port with {name}"
                )

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = broker_properties(self.settings, self.home)
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(_package_file("log4j2.properties"))

    def _format_storage(self, java: str, libs: Path) -> None:
        """Format the KRaft log dir once; the cluster id is kept next to it."""
        if (self.home / "data" / "meta.properties").is_file():
            return
        id_file = self.home / "cluster.id"
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

    def _start(self, java: str, libs: Path) -> None:
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
        self._wait_ready(proc.pid, started_here=True)

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


def _package_file(name: str) -> str:
    return resources.files("streams").joinpath("kafka", name).read_text()
