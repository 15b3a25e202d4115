"""A single-node KRaft Kafka broker on loopback, run from the pinned Maven Central jars.

Development (``oneid broker``), ``oneid demo``, the tests and the benchmark start one with
:class:`LocalBroker`; production points ``kafka.bootstrap_servers`` at the brand's brokers.
The broker is a child JVM (``java -cp <jars> kafka.Kafka server.properties``) whose storage is
formatted first (``kafka.tools.StorageTool format``); it combines the broker and controller
roles and listens on two free loopback ports.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from oneid.conf import OneIdConfig
from oneid.errors import OneIdError
from oneid.jars import resolve_configured
from oneid.java import find_java

logger = logging.getLogger(__name__)

HEAP = "-Xmx512m"
LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaServer
logger.kafka.level = info
"""


class BrokerError(OneIdError):
    """The embedded broker did not start (its log file holds the details)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_jars(cfg: OneIdConfig) -> list[Path]:
    """Local paths of the broker's classpath (``jars.kafka_broker``), downloaded on first use."""
    return resolve_configured(cfg.env.jars.kafka_broker, cfg.env.jars, "jars.kafka_broker")


class LocalBroker:
    """A Kafka broker + controller in one JVM, its data under ``folder``.

    ``with LocalBroker(cfg, folder) as broker:`` starts it and stops it afterwards;
    ``broker.bootstrap_servers`` is its ``host:port``. A folder that already holds a formatted
    broker is reused (its topics and offsets stay), so a restart keeps the data.
    """

    def __init__(
        self, cfg: OneIdConfig, folder: str | Path, port: int | None = None, partitions: int = 2
    ) -> None:
        self.cfg = cfg
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.controller_port = free_port()
        self.partitions = partitions
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / "broker.log"

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage (first start only), start the JVM, wait until it answers."""
        java = str(find_java().executable)
        classpath = os.pathsep.join(str(p) for p in broker_jars(self.cfg))
        self.folder.mkdir(parents=True, exist_ok=True)
        properties = self._write_properties()
        log4j = self.folder / "log4j2.properties"
        log4j.write_text(LOG4J.format(log=self.log_file), encoding="utf-8")
        base = [java, HEAP, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        if not (self.folder / "data" / "meta.properties").is_file():
            cluster_id = _cluster_id()
            result = subprocess.run(
                # ``--cluster-id=ID``: an id may start with "-", which as a separate argument
                # the tool's parser takes for an option (and then reports the id missing)
                [
                    *base,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    "--config",
                    str(properties),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                raise BrokerError(f"formatting Kafka storage failed: {result.stderr[-2000:]}")
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                [*base, "kafka.Kafka", str(properties)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._wait_ready(timeout)
        logger.info("kafka broker ready on %s (%s)", self.bootstrap_servers, self.folder)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def create_topics(self, *names: str, partitions: int | None = None) -> None:
        """Create topics (existing ones are left as they are)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        topics = [NewTopic(n, partitions or self.partitions, 1) for n in names]
        for name, future in admin.create_topics(topics).items():
            try:
                future.result(30)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BrokerError(f"cannot create topic {name}: {exc}") from exc

    def _write_properties(self) -> Path:
        path = self.folder / "server.properties"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.folder / "data"),
            "num.partitions": str(self.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.hours": "48",
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8")
        return path

    def _wait_ready(self, timeout: float) -> None:
        """Until the port accepts connections and the broker answers a metadata request."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(
                    f"kafka broker exited with {self.process.returncode}: see {self.log_file}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
                if admin.list_topics(timeout=5).brokers:
                    return
            except Exception:  # not listening / not answering yet
                time.sleep(0.3)
        self.stop()
        raise BrokerError(f"kafka broker not ready after {timeout:.0f} s: see {self.log_file}")


def _die_with_parent() -> None:
    """Linux: the broker gets SIGKILL when the process that started it dies (even by kill -9),
    so a killed test run or demo leaves no broker behind."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
