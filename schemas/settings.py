"""All turnstream settings in one place: the models, on the ground floor so that every layer
reads them without an upward import (``streams/settings.py`` loads them, with one error
message per bad setting).

Values come, in order of precedence, from keyword arguments, ``TURNSTREAM_*`` environment
variables, an optional TOML file (``TURNSTREAM_CONFIG=path.toml``) and the defaults below.
Infrastructure settings are flat (``TURNSTREAM_KAFKA_BOOTSTRAP``); phase and retrieval
settings are nested with ``__`` (``TURNSTREAM_PHASES__SENSOR__MODE=llm``,
``TURNSTREAM_RETRIEVAL__RULES__MAX_K=8``). Invalid values fail at start with an error that
names the setting (see ``streams.settings.load_settings``).
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.domain.retrieval import SelectionStrategy

__all__ = [
    "EnforcementPhaseSettings",
    "PhaseSettings",
    "SelectionStrategy",
    "Settings",
    "TaskMode",
]

ENV_PREFIX = "TURNSTREAM_"
CONFIG_FILE_ENV = "TURNSTREAM_CONFIG"
MIN_PSEUDONYM_KEY_BYTES = 16
DEFAULT_PYTHON_PREFIXES: tuple[str, ...] = ("packs.tools",)
"""The tool modules that ship with turnstream: the example packs' tools (``packs/tools/``)."""
MODULE_PREFIX = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.?$")


def normal_prefix(prefix: str) -> str:
    """A module prefix as the tool policy compares it: a dotted name without a trailing dot."""
    if not MODULE_PREFIX.match(prefix):
        raise ValueError(f"{prefix!r} is not a dotted module name")
    return prefix.rstrip(".")


class TaskMode(StrEnum):
    """How an LLM-shaped task runs: a documented heuristic, or a model behind the openai client."""

    HEURISTIC = "heuristic"
    LLM = "llm"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PhaseSettings(_Strict):
    """Per-phase knobs that mirror DESIGN.md section 2."""

    enabled: bool = True
    mode: TaskMode = TaskMode.HEURISTIC
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    """One LLM attempt's HTTP timeout (LLM phases); retrieval's join and tools have their own."""
    retries: int = Field(default=2, ge=0, le=10)
    """LLM attempts after the first, for failures a retry can fix (never regenerations)."""
    max_tokens: int = Field(default=512, ge=1, le=32_768)
    """The completion tokens one LLM attempt may generate: a model looping inside a JSON
    string stops here instead of at the server's own limit."""


class RetrievalPhaseSettings(PhaseSettings):
    """The join deadline: a retrieval type later than this is recorded as missing."""

    timeout_s: float = Field(default=0.5, gt=0, le=600)


class ToolsPhaseSettings(PhaseSettings):
    timeout_s: float = Field(default=5.0, gt=0, le=600)


class EnforcementPhaseSettings(PhaseSettings):
    """``retries`` are the judge's LLM retries; ``regenerations`` the P10 -> P9 loop."""

    regenerations: int = Field(default=2, ge=0, le=10)
    """Answers P10 may send back to P9 before the fallback template: P9 runs at most
    ``1 + regenerations`` times per turn."""


class PhasesSettings(_Strict):
    """Defaults live on classes, not instances, so that overriding one nested field from the
    environment keeps the phase's other defaults."""

    identification: PhaseSettings = PhaseSettings()
    sensor: PhaseSettings = PhaseSettings()
    customer_data: PhaseSettings = PhaseSettings()
    retrieval: RetrievalPhaseSettings = RetrievalPhaseSettings()
    rule_selection: PhaseSettings = PhaseSettings()
    scenarios: PhaseSettings = PhaseSettings()
    tools: ToolsPhaseSettings = ToolsPhaseSettings()
    planning: PhaseSettings = PhaseSettings()
    generation: PhaseSettings = PhaseSettings()
    enforcement: EnforcementPhaseSettings = EnforcementPhaseSettings()
    persistence: PhaseSettings = PhaseSettings()


class RetrievalTypeSettings(_Strict):
    """Selection knobs of one retrieval type (rules, scenarios, memories, intents)."""

    rerank: bool = False
    strategy: SelectionStrategy = SelectionStrategy.ADAPTIVE_K
    min_score: float = Field(default=0.25, ge=-1.0, le=1.0)
    min_k: int = Field(default=1, ge=0, le=100)
    max_k: int = Field(default=5, ge=1, le=100)
    pool_top_n: int = Field(default=1, ge=1, le=20)
    """An object with several points (phrases) scores as the mean of its best n points."""
    adaptive_margin: float | None = Field(default=None, ge=0.0, le=1.0)
    """adaptive_k's relative margin for this type; None: the strategy default (0.15)."""

    @model_validator(mode="after")
    def _k_bounds(self) -> RetrievalTypeSettings:
        if self.min_k > self.max_k:
            raise ValueError(f"min_k ({self.min_k}) must be <= max_k ({self.max_k})")
        return self


class RuleRetrievalSettings(RetrievalTypeSettings):
    """Recall first: P5 filters what P4 retrieves, a rule P4 misses is lost."""

    min_score: float = Field(default=0.15, ge=-1.0, le=1.0)
    min_k: int = Field(default=3, ge=0, le=100)
    max_k: int = Field(default=8, ge=1, le=100)
    adaptive_margin: float | None = Field(default=0.35, ge=0.0, le=1.0)


class ScenarioRetrievalSettings(RetrievalTypeSettings):
    max_k: int = Field(default=3, ge=1, le=100)


class IntentRetrievalSettings(RetrievalTypeSettings):
    strategy: SelectionStrategy = SelectionStrategy.FIXED_K
    max_k: int = Field(default=3, ge=1, le=100)
    pool_top_n: int = Field(default=3, ge=1, le=20)


class RetrievalSettings(_Strict):
    """Per-type selection; as for phases, per-type defaults live on subclasses."""

    rules: RuleRetrievalSettings = RuleRetrievalSettings()
    scenarios: ScenarioRetrievalSettings = ScenarioRetrievalSettings()
    memories: RetrievalTypeSettings = RetrievalTypeSettings()
    intents: IntentRetrievalSettings = IntentRetrievalSettings()


class AnalyticsSettings(_Strict):
    """The ClickHouse analytics consumer (``sinks/analytics``, ``streams/analytics_consumer``).

    Embedded chdb in ``chdb_path`` (default ``<data_dir>/clickhouse``) unless
    ``clickhouse_url`` is set. The process that owns the embedded data serves read-only SQL
    on ``127.0.0.1:query_port`` (0: no endpoint) for ``turnstream sql`` and ``report``."""

    enabled: bool = True
    database: str = Field(default="turnstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    chdb_path: Path | None = None
    group_id: str | None = Field(default=None, description="default <topic_prefix>.analytics")
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=300)
    retry_initial_s: float = Field(default=0.5, gt=0, le=60)
    retry_max_s: float = Field(default=30.0, gt=0, le=3600)
    query_port: int = Field(default=18124, ge=0, le=65535)
    store_texts: bool = Field(
        default=False, description="keep message and answer texts, masked (sinks.analytics.privacy)"
    )
    pseudonym_key: str | None = Field(
        default=None,
        max_length=512,
        repr=False,
        description="HMAC key of the pseudonyms in turns.session_key; unset or empty: a random "
        "key per process (sinks.analytics.privacy)",
    )

    @field_validator("pseudonym_key")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value.encode()) < MIN_PSEUDONYM_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes long")
        return value


class WebhookSettings(_Strict):
    """Webhook delivery (``sinks/webhooks``, ``streams/webhook_consumer``)."""

    enabled: bool = True
    group_id: str | None = Field(default=None, description="default <topic_prefix>.webhooks")
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_initial_s: float = Field(default=1.0, gt=0, le=600)
    backoff_max_s: float = Field(default=60.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    concurrency_per_subscription: int = Field(default=4, ge=1, le=256)
    max_pending_per_subscription: int = Field(default=1000, ge=1, le=1_000_000)
    allow_private_targets: bool = Field(
        default=False, description="allow loopback, private and link-local targets (tests)"
    )


class OpsSettings(_Strict):
    """The operator endpoint of a worker (``streams/ops_server.py``): ``/health``, ``/ready``
    and Prometheus ``/metrics`` on ``host:port``; port 0 serves none. Loopback by default:
    set ``host`` to ``0.0.0.0`` where a scraper on another host must reach it."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    lag_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="how often consumer lag is read from Kafka"
    )
    tenant_labels: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="distinct tenant label values per process; later tenants count as 'other'",
    )


class OtelSettings(_Strict):
    """OpenTelemetry tracing (``streams/tracing.py``): spans are exported over OTLP/HTTP to
    ``endpoint`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``); with neither, tracing is
    off and costs one flag test per record."""

    endpoint: str | None = Field(
        default=None, description="OTLP/HTTP base URL, e.g. http://collector:4318"
    )
    service_name: str = Field(default="turnstream", min_length=1, max_length=128)


class ToolSettings(_Strict):
    """What packs' tools may run and reach (``processors.tool_policy``): checked by ``pack
    validate`` and ``pack load``, and again at every call in the worker."""

    python_allowed_prefixes: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_PYTHON_PREFIXES),
        description="modules Python tools may come from: a package allows its submodules; "
        "comma-separated in the environment (packs.tools,acme_tools)",
    )
    allow_private_targets: bool = Field(
        default=False,
        description="let HTTP tools reach loopback, private and link-local addresses (tests, "
        "local development)",
    )

    @field_validator("python_allowed_prefixes", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("python_allowed_prefixes")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        return [normal_prefix(prefix) for prefix in value]


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "turnstream"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "turnstream"


DEFAULT_PRODUCER_MAX_REQUEST_SIZE = 1_000_000
"""Faust's and Kafka's default producer ``max.request.size``, just below the broker's default
``message.max.bytes`` (1,048,588)."""


class Settings(BaseSettings):
    """The whole configuration of a turnstream process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # Kafka: an external cluster when bootstrap is set, else the embedded local broker.
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,host:port] of an existing Kafka cluster"
    )
    kafka_host: str = "127.0.0.1"
    kafka_port: int = Field(default=19092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=19093, ge=1, le=65535)
    kafka_version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$")
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mg]$")
    kafka_start_timeout_s: float = Field(default=60.0, gt=0)
    kafka_wait_s: float = Field(default=120.0, ge=0)
    """How long a starting worker waits out an unreachable cluster at any step of its start
    (topics, packs, group join, recovery; counted from the step's first failed attempt) before
    it exits with one line: a worker restarted while the brokers restart too waits for them
    instead of crash-looping. Once started, a worker waits for the cluster indefinitely."""
    kafka_backoff_s: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="after a failed connection to a broker a client waits this long before it "
        "connects to that broker again, doubling per consecutive failure up to "
        "kafka_backoff_max_s (±20 % jitter); Kafka's reconnect.backoff.ms",
    )
    kafka_backoff_max_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="the longest wait between connection attempts to an unreachable broker "
        "(and between a starting worker's retries); Kafka's reconnect.backoff.max.ms. A "
        "client notices a broker that is back within about this long",
    )
    log_repeat_s: float = Field(
        default=30.0,
        ge=0,
        description="a worker logs a Kafka client warning or error that repeats (each failed "
        "reconnect during an outage) once per this many seconds, with how many it held back; "
        "0: every record",
    )
    topic_prefix: str = Field(default="turnstream", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=12, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=7)

    data_dir: Path = Field(default_factory=_default_data_dir)
    packs_dir: Path = Field(
        default=Path("packs"),
        description="where Python tools find their packs' data files: <packs_dir>/<tenant>/<agent>",
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    max_pack_texts: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="the most texts a pack may make retrieval embed (intent examples and "
        "descriptions, rule conditions and examples, scenario summaries and entry examples): "
        "pack validate, pack load and the worker refuse a larger pack",
    )
    table_store: Literal["rocksdb", "memory"] = Field(
        default="rocksdb",
        description="where the worker's Faust tables live: rocksdb (rocksdict, under "
        "<data_dir>/faust; a restart after a clean stop recovers from the local store plus "
        "the changelogs' tail, one after a crash from the whole changelogs) or memory (no "
        "files; every start replays whole changelogs). On both, a key "
        "not keyed by the record key (customer data, session state) has one local home, read "
        "from any partition this worker holds (docs/operations.md)",
    )
    table_store_memory_mb: int = Field(
        default=64,
        ge=8,
        le=65536,
        description="rocksdb: the memory all of a worker process's table databases share (one "
        "block cache holding data, index and filter blocks, with the memtables charged to it), "
        "whatever the number of sessions they hold",
    )
    session_idle_ttl_s: float = Field(
        default=7 * 86400.0,
        ge=0,
        description="a channel identity's session (its gate, session states, last response, "
        "retrieval join) idle this long, with no turn in flight or waiting, is deleted by the "
        "worker that owns its partition (tombstones in the changelogs); its next message starts "
        "a fresh session (and a new customer id unless the gateway sends one). 0: never",
    )
    customer_data_idle_ttl_s: float = Field(
        default=90 * 86400.0,
        ge=0,
        description="a customer's persistent data not updated for this long is deleted (a "
        "tombstone); kept per customer, so it outlives the sessions it was written from. 0: never",
    )
    pack_index_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU priority (nice) of the child process that embeds a pack loaded while "
        "turns run: 10 leaves turns ~90 % of a contended core, 19 ~98 % (and a busy machine "
        "may then take minutes to load a large pack)",
    )
    embedder_backend: Literal["torch", "onnx-int8"] = Field(
        default="torch",
        description="torch: sentence-transformers (the reference); onnx-int8: int8 onnxruntime",
    )

    qdrant_url: str | None = None
    clickhouse_url: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = Field(default=None, max_length=512, repr=False)

    max_message_bytes: int = Field(default=64 * 1024, ge=256, le=10 * 1024 * 1024)
    producer_max_request_size: int = Field(
        default=DEFAULT_PRODUCER_MAX_REQUEST_SIZE,
        ge=128 * 1024,
        le=64 * 1024 * 1024,
        description="the largest record (uncompressed, key and headers included) the worker's "
        "producer sends (Faust's producer_max_request_size); a dead letter keeps a prefix of "
        "its original 64 KiB below it. Keep it at or below the broker's message.max.bytes",
    )
    turn_stall_s: float = Field(
        default=60.0,
        gt=0,
        description="a turn in flight this long is driven again (effects stay exactly once)",
    )
    worker_concurrency: int = Field(
        default=8, ge=1, le=256, description="actors per pipeline agent in one worker"
    )
    llm_stage_concurrency: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="actors of each stage that may wait on the LLM (session, decide, generate, "
        "enforce) when an LLM endpoint is configured: waiting is not CPU work",
    )
    llm_max_in_flight: int = Field(
        default=256, ge=1, le=4096, description="LLM requests in flight at once per endpoint"
    )
    llm_backoff_s: float = Field(
        default=0.25,
        ge=0,
        le=60,
        description="the first retry waits up to this long (full jitter), doubling per retry",
    )
    retrieval_queue_wait_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a retrieval type not even taken up this long after the join's deadline is "
        "a gap (its consumer is down); one taken up gets phases.retrieval.timeout_s from then",
    )
    local_llm_port: int = Field(default=18080, ge=1, le=65535)
    """``turnstream llm serve`` and ``--llm`` commands: the loopback port of the local model."""
    local_llm_threads: int = Field(default=1, ge=1, le=256)
    """Decoding threads of the local server. One by default: on a machine the worker shares,
    llama.cpp's spinning threads slow each other down (40 tokens took 58 s with two threads on
    a loaded 2-core machine, 3 s with one)."""
    local_llm_parallel: int = Field(default=4, ge=1, le=64)
    """Requests the local server decodes at once (llama.cpp slots); more queue there."""
    local_llm_context: int = Field(default=4096, ge=512, le=131_072)
    """Context tokens per slot."""
    local_llm_start_timeout_s: float = Field(default=120.0, gt=0, le=3600)

    phases: PhasesSettings = PhasesSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    tools: ToolSettings = ToolSettings()
    ops: OpsSettings = OpsSettings()
    otel: OtelSettings = OtelSettings()

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.kafka_port == self.kafka_controller_port:
            raise ValueError("kafka_port and kafka_controller_port must differ")
        return self

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect: the external cluster, or the embedded broker."""
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get(CONFIG_FILE_ENV)
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)
