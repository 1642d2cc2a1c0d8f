"""One typed ``Settings``, read once from ``HITSTREAM_*`` environment variables (and flags).

Adapters are chosen by URL scheme: an empty URL means the embedded default inside
``data_dir`` (SQLite log, DuckDB store, in-process fan-out).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITSTREAM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int = Field(default=0, ge=0, le=65535)
    """The gRPC stats service's port, on ``host``: ``serve`` runs it when set (0: not);
    ``hitstream grpc`` uses 50051 when it is 0."""
    data_dir: Path = Path("hitstream-data")
    log_url: str = ""
    """``sqlite:///path`` (default: data_dir/log.sqlite3), ``memory://``; more with extras."""
    store_url: str = ""
    """``duckdb:///path`` (default: data_dir/hitstream.duckdb), ``memory://``."""
    store_rollups: bool = True
    """Answer stats queries over whole half hours from the rollups. Off: queries scan raw
    events; on PostgreSQL writes keep the rollups either way, on DuckDB they stop keeping
    them too (faster writes; turning it on again needs ``hitstream migrate
    --rebuild-rollups``, until which its queries keep scanning)."""
    duckdb_memory_mb: int = Field(default=150, ge=0)
    """DuckDB's memory limit in MB once migrations ran (0: DuckDB's own, 80 % of RAM). Its
    buffer pool keeps every table and index page it read until the limit; a lower one evicts
    (pages are re-read from the file) and makes big sorts and aggregates spill to disk. A
    rollup rebuild runs without it (decisions 0032, 0037)."""
    fanout_url: str = ""
    """``memory://`` (default), ``redis://host:6379/0`` to share live updates between processes."""
    cache_url: str = ""
    """``memory://`` (default, in-process LRU), ``redis://host:6379/0`` to share answers."""

    kafka_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_security_protocol: str | None = None
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (inferred from the two below when unset)."""
    kafka_sasl_mechanism: str | None = None
    """SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN."""
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_ca_location: str | None = None
    kafka_client_id: str = "hitstream"
    kafka_message_timeout_ms: int = Field(default=10_000, ge=100)
    kafka_session_timeout_ms: int | None = None
    kafka_heartbeat_interval_ms: int | None = None
    kafka_group_prefix: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9._-]*$")
    """Put before the consumer groups' names (the processors' is ``processor``): deployments
    sharing a Kafka cluster keep apart, and ACLs on group prefixes match."""
    kafka_extra: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Any other librdkafka setting, as JSON: ``{"linger.ms": 5}``."""
    redis_stream_claim_idle_ms: int = Field(default=30_000, ge=100)
    """A Redis Streams message pending this long on a silent consumer is taken over."""

    salts_url: str = ""
    """Where daily salts live: the data folder (default), or ``redis://...`` shared by
    several collectors so that they hash a visitor alike."""

    collector_url: str = ""
    """Where browsers send events, when that is not the dashboard's address (scale-out: the
    collectors' public URL, e.g. ``https://collect.example.com``): the snippets the sites
    page, the dashboard and ``hitstream sites add`` give carry ``data-api`` pointing there."""

    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """CIDRs whose ``X-Forwarded-For`` is believed, comma-separated (e.g. ``127.0.0.1/32``)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (besides the dashboard's own) whose browsers may call the read API with a
    key; ingestion answers CORS for each site's allowed hosts, whatever this says."""
    ingest_rate_per_ip: float = Field(default=100.0, ge=0)
    """Events per second one client address may send (0: no limit); write keys are exempt."""
    ingest_burst_per_ip: float = Field(default=1000.0, ge=0)
    ingest_rate_per_site: float = Field(default=0.0, ge=0)
    """Events per second one site may receive (0: no limit)."""
    ingest_burst_per_site: float = Field(default=0.0, ge=0)
    """Default (0): ten seconds' worth of ``ingest_rate_per_site``."""
    url_query: Literal["campaign", "all"] = "campaign"
    """What of a page URL's query string is stored: ``campaign`` its UTM tags (and whether
    an ad click id was there), nothing else, and no fragment but a hash route; ``all`` the
    URL as sent (decision 0048)."""
    metrics_token: str = ""
    """When set, ``/metrics`` needs ``Authorization: Bearer <token>`` (or an admin)."""
    sites: str = ""
    """Sites to register at start if missing (infrastructure as code): a comma-separated
    list of domains, or a JSON list of site objects (``[{"site_id": "a.io", "timezone":
    "Europe/Berlin", "public": true}]``). Existing sites are left as they are."""
    compat_site: str = ""
    """The registered site that the seeds' clients' events without a site go to, and whose
    stats their read endpoints answer (``docs/switching.md``); empty: those endpoints ask for
    one. ``compat_site_<endpoint>`` overrides it for one client where a deployment serves
    several."""
    compat_site_event: str = ""
    """``POST /event`` shaped as page_view/click/session events, ``GET /analytics``, ``/ws``."""
    compat_site_action: str = ""
    """``POST /event`` shaped as user actions (user_id, action, element), JSON ``/metrics``."""
    compat_site_events: str = ""
    """``POST /events`` and ``GET /stats`` without a ``site_id``."""
    compat_site_ingest: str = ""
    """``POST /ingest`` and ``GET /analytics/events``."""
    compat_site_api_analytics: str = ""
    """``POST /api/analytics``, ``GET /api/stats``."""
    max_connections: int = Field(default=10_000, ge=1)
    """Open HTTP and WebSocket connections per process; past it the longest-waiting idle
    connection is closed to make room, and with none idle a new one gets 503."""
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """Time to send the request line and headers (from connecting, or from a keep-alive
    request's first byte): 408 and closed after it."""
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Time to send a request's body once its headers are in: closed after it."""
    keep_alive_timeout_s: int = Field(default=5, ge=1, le=3600)
    """An idle keep-alive connection is closed after this many seconds."""
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    """Request line plus headers, in bytes: 431 and closed past it."""
    max_headers: int = Field(default=100, ge=10, le=10_000)
    """Headers per request: 431 and closed past it."""
    allow_headless: bool = False
    """Count headless browsers (tests, demos); in production they are dropped as bots."""

    log_retention_s: int = Field(default=6 * 3600, ge=0)
    """How long consumed events stay in the embedded log (for ``hitstream replay``)."""
    max_event_age_s: int = Field(default=24 * 3600, ge=60)
    max_future_skew_s: int = Field(default=300, ge=0)
    retention_days: int = Field(default=0, ge=0)
    """Delete events older than this many days (0 keeps everything)."""
    session_timeout_s: int = Field(default=1800, ge=60)

    batch_max_events: int = Field(default=5000, ge=1)
    batch_max_wait_ms: int = Field(default=200, ge=1)
    """The processor waits at most this long for one poll of the log."""
    write_buffer_events: int = Field(default=5000, ge=1)
    """The processor writes the store once this many events wait in its write buffer ..."""
    write_buffer_ms: int = Field(default=1000, ge=0, le=60_000)
    """... or once the oldest has waited this long (0: write every poll at once). The
    floor of live latency; a quiet site costs about one store write per this period."""
    live_max_busy_share: float = Field(default=0.1, gt=0.0, le=1.0)
    """The most of the store's time one live view's updates may take: a view whose queries
    take seconds (a filter on a big site) updates less often (decision 0029); 1: every second
    whatever it costs."""
    processor_process: bool = True
    """``serve`` on the embedded default runs its processor in a child process (both cores;
    bootstrap/unit.py); false: everything in one process."""
    demo: bool = False
    """Fill ``demo_site`` with 60 days of synthetic history, then keep sending live visits."""
    demo_site: str = "demo.example"
    demo_events_per_day: int = Field(default=3000, ge=1)
    """The history's events a day (the weekly mean, engagement events not counted)."""
    demo_live_events_per_day: int = Field(default=0, ge=0)
    """The live visits' rate, in events a day; 0: the history's (today compares with the
    days before it; the live traffic ran at 170 times the history's)."""
    cache_entries: int = Field(default=2048, ge=0)
    alert_rules: str = ""
    """Alert rules: a JSON list (``[{"name": "tracker-down", "metric": "pageviews",
    "window_s": 900, "op": "<", "threshold": 1}]``) or the path of a JSON file holding one."""
    alert_notifiers: str = "log://"
    """Comma-separated notifier URLs: ``log://``, ``https://hooks.slack.com/services/...``."""
    alert_interval_s: float = Field(default=10.0, gt=0, le=3600)
    """Seconds between two evaluations of every alert rule."""
    log_level: str = "info"

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("collector_url")
    @classmethod
    def _collector_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. https://collect.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL without a query or fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold credentials (every dashboard user sees it)")
        if any(c in value for c in "\"'<>` \\"):
            raise ValueError("must not hold quotes, spaces or angle brackets (it goes in HTML)")
        if parts.path.rstrip("/").endswith("/api/v1/events"):
            raise ValueError("is the collectors' base URL: /api/v1/events is added to it")
        return value

    def events_url(self) -> str:
        """Where the tracker must send events ("": the script's own address)."""
        return f"{self.collector_url}/api/v1/events" if self.collector_url else ""

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    def compat_sites(self) -> dict[str, str]:
        """Endpoint family -> site for the seeds' clients (``""``: the default)."""
        chosen = {
            "event": self.compat_site_event,
            "action": self.compat_site_action,
            "events": self.compat_site_events,
            "ingest": self.compat_site_ingest,
            "api_analytics": self.compat_site_api_analytics,
        }
        return {"": self.compat_site, **{k: v for k, v in chosen.items() if v}}

    def resolved_log_url(self) -> str:
        return self.log_url or f"sqlite:///{(self.data_dir / 'log.sqlite3').resolve()}"

    def resolved_store_url(self) -> str:
        return self.store_url or f"duckdb:///{(self.data_dir / 'hitstream.duckdb').resolve()}"

    def resolved_fanout_url(self) -> str:
        return self.fanout_url or "memory://"

    def resolved_cache_url(self) -> str:
        return self.cache_url or "memory://"
