"""Apache Kafka 4.x in KRaft mode: one combined broker+controller on 127.0.0.1.

The jars come from Maven Central through `kafka-pom.xml` (`mvn dependency:copy-dependencies`)
into FTE_DATA_DIR/kafka/libs, once; a stamp of the pom's hash lets later starts skip Maven.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException

from fte.logs import get_logger
from fte.settings import Settings
from fte.stack import ServiceStatus
from fte.stack.process import port_open, read_pid, terminate, wait_until

log = get_logger(__name__)

POM = Path(__file__).with_name("kafka-pom.xml")
_NODE_ID = 1

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="{logs}/server.log" filePattern="{logs}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
  </Loggers>
</Configuration>
"""


class EmbeddedKafka:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.FTE_DATA_DIR / "kafka"
        self.libs = self.home / "libs"
        self.data = self.home / "data"
        self.logs = self.home / "logs"
        self.pid_file = self.home / "kafka.pid"
        self.port = settings.FTE_KAFKA_PORT
        self.controller_port = settings.FTE_KAFKA_CONTROLLER_PORT

    # --- jars ----------------------------------------------------------------------------
    def _pom_hash(self) -> str:
        return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]

    def ensure_jars(self) -> None:
        stamp = self.libs / ".pom-hash"
        if stamp.exists() and stamp.read_text() == self._pom_hash():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (`mvn`) is needed once to fetch the Kafka jars")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        self.libs.mkdir(parents=True)
        log.info("kafka.jars.resolve", pom=str(POM))
        subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime"],
            check=True,
        )
        stamp.write_text(self._pom_hash())

    # --- config --------------------------------------------------------------------------
    def _write_config(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": "4",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.xml").write_text(LOG4J2.format(logs=self.logs))
        return path

    def _java(self, main: str, *args: str, background: bool = False):
        cmd = [
            "java", f"-Xmx{self.settings.FTE_KAFKA_HEAP}", f"-Xms{self.settings.FTE_KAFKA_HEAP}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.logs}",
            "-cp", f"{self.libs}/*", main, *args,
        ]
        if background:
            out = open(self.logs / "stdout.log", "ab")  # noqa: SIM115 - handed to the child process
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    def _ensure_formatted(self, config: Path) -> None:
        if (self.data / "meta.properties").exists():
            return
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            # Kafka cluster ids are 16 random bytes, base64url without padding.
            import base64
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        log.info("kafka.storage.format", dir=str(self.data))
        self._java("kafka.tools.StorageTool", "format", "--config", str(config),
                   # One argument: an id may start with "-", which argparse would read as a flag.
                   f"--cluster-id={id_file.read_text().strip()}", "--ignore-formatted")

    # --- lifecycle -----------------------------------------------------------------------
    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def start(self, timeout: float = 120.0) -> None:
        if self.pid() is not None:
            wait_until(self.ready, timeout, what="kafka to accept connections")
            return
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is taken by another process (FTE_KAFKA_PORT)")
        for d in (self.home, self.data, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.ensure_jars()
        config = self._write_config()
        self._ensure_formatted(config)
        proc = self._java("kafka.Kafka", str(config), background=True)
        self.pid_file.write_text(str(proc.pid))
        log.info("kafka.starting", pid=proc.pid, port=self.port)
        try:
            wait_until(lambda: proc.poll() is None and self.ready(), timeout,
                       what="kafka to accept connections")
        except TimeoutError:
            tail = (self.logs / "stdout.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"kafka did not start; see {self.logs}:\n{tail}") from None

    def ready(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}",
                             "log_level": 0})
        try:
            md = admin.list_topics(timeout=2)
            return bool(md.brokers)
        except KafkaException:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        log.info("kafka.stopping", pid=pid)
        terminate(pid, timeout)
        self.pid_file.unlink(missing_ok=True)


def status(settings: Settings) -> ServiceStatus:
    if not settings.embedded_kafka:
        up = _external_ready(settings.kafka_bootstrap)
        return ServiceStatus("kafka", up, settings.kafka_bootstrap, embedded=False)
    kafka = EmbeddedKafka(settings)
    pid = kafka.pid()
    up = pid is not None and kafka.ready()
    return ServiceStatus("kafka", up, settings.kafka_bootstrap, embedded=True,
                         detail=f"pid {pid}" if pid else "not running")


def _external_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        return bool(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3).brokers)
    except KafkaException:
        return False
