"""Wiring: the services a process runs, built from ``Settings`` in one sitting.

``build`` makes the adapters (``hitstream.bootstrap.adapters``), then every service the
process's roles need, each handed what it depends on: the collector (log, salts, country
lookup), the processor (its pipeline of named steps), the stats service and its cache, the
quality source, the live hub, alerting and its notifiers, the demo. Nothing connects here: the
``Runtime`` starts and stops what this builds. A broken setting fails here, before anything
runs, with a ``ConfigError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from hitstream.bootstrap.adapters import (
    data_folders,
    make_cache,
    make_fanout,
    make_log,
    make_notifiers,
    make_salts,
    make_store,
    make_tally,
)
from hitstream.bootstrap.runtime import ROLES, Runtime, sites_from
from hitstream.disk import DataFolders
from hitstream.domain.alerts import AlertRule, parse_rules
from hitstream.domain.events import Limits
from hitstream.domain.ratelimit import Buckets
from hitstream.errors import ConfigError, QueryError
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog
from hitstream.metrics import Metrics
from hitstream.salts.base import SaltKeeper
from hitstream.services.access import Gatekeeper
from hitstream.services.accounts import Accounts
from hitstream.services.alerting import AlertBoard, Alerting, AlertingMetrics
from hitstream.services.collector import Collector
from hitstream.services.live import LiveConfig, LiveHub
from hitstream.services.processor import Processor
from hitstream.services.quality import Quality, Rejections
from hitstream.services.stats import StatsService
from hitstream.settings import Settings
from hitstream.stores.base import Store


def build(
    settings: Settings, roles: frozenset[str] = ROLES, *, alerting_here: bool | None = None
) -> Runtime:
    """Everything one process runs for ``roles``, built but not started. Alerting runs with
    the processor role unless ``alerting_here`` says otherwise (``serve``'s web process
    keeps it when its processor runs in a child: the alerts API reads its state)."""
    unknown = roles - ROLES
    if unknown:
        raise ConfigError(f"unknown roles {sorted(unknown)}")
    metrics = Metrics(process=",".join(sorted(roles)))
    log = make_log(settings.resolved_log_url(), settings)
    store = make_store(settings.resolved_store_url(), settings)
    fanout = make_fanout(settings.resolved_fanout_url())
    cache = make_cache(settings.resolved_cache_url(), settings.cache_entries)
    tally = make_tally(settings.resolved_fanout_url(), store)
    store.count_answers(lambda path: metrics.store_queries.labels(path).inc())
    gate = Gatekeeper(store, metrics_token=settings.metrics_token)

    salts = collector = None
    if "collector" in roles:
        salts = make_salts(settings.salts_url, settings.data_dir)
        collector = make_collector(settings, log, salts, metrics, gate)
    rejections = Rejections(tally, collector)

    processor = alerting = None
    warm_ups: list[Callable[[], None]] = []
    if "processor" in roles:
        processor, warm_ups = make_processor(settings, log, store, fanout, metrics, gate)
    if alerting_here if alerting_here is not None else "processor" in roles:
        alerting = make_alerting(
            store,
            fanout,
            rules=settings.alert_rules,
            notifiers=settings.alert_notifiers,
            interval_s=settings.alert_interval_s,
            registry=metrics.registry,
        )

    board = None
    if alerting is None and "web" in roles and load_rules(settings.alert_rules):
        board = AlertBoard(fanout, load_rules(settings.alert_rules))  # the processors evaluate
    shown = alerting if alerting is not None else board
    stats = quality = live = accounts = None
    if roles & {"web", "grpc"}:
        stats = StatsService(store, metrics, cache=cache)
    if "web" in roles and stats is not None:
        accounts = Accounts(store)
        quality = Quality(rejections, store)
        live = LiveHub(
            stats,
            store,
            fanout,
            quality=quality,
            registry=metrics.registry,
            query_ms=stats.now_ms,
            config=LiveConfig(max_busy_share=settings.live_max_busy_share),
            alert_history=shown.recent if shown is not None else None,
        )

    runtime = Runtime(
        settings=settings,
        roles=roles,
        metrics=metrics,
        log=log,
        store=store,
        fanout=fanout,
        cache=cache,
        tally=tally,
        salts=salts,
        rejections=rejections,
        disk=DataFolders(data_folders(settings, roles, log, store)),
        collector=collector,
        processor=processor,
        warm_ups=warm_ups,
        alerting=alerting,
        alert_board=board,
        stats=stats,
        quality=quality,
        live=live,
        gate=gate,
        accounts=accounts,
    )
    if settings.demo and collector is not None:
        from hitstream.synthetic.demo import Demo

        runtime.demo = Demo(
            collector,
            store,
            settings.demo_site,
            events_per_day=settings.demo_events_per_day,
            live_events_per_day=settings.demo_live_events_per_day,
        )
    return runtime


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_past_ms=settings.max_event_age_s * 1000,
        max_future_ms=settings.max_future_skew_s * 1000,
    )


def make_collector(
    settings: Settings, log: EventLog, salts: SaltKeeper, metrics: Metrics, gate: Gatekeeper
) -> Collector:
    from hitstream.enrich.geo import IptoccCountryLookup

    site_burst = settings.ingest_burst_per_site or settings.ingest_rate_per_site * 10
    return Collector(
        log,
        salts,
        IptoccCountryLookup(),
        metrics,
        sites=gate,
        limits=limits_from(settings),
        per_ip=Buckets(settings.ingest_rate_per_ip, settings.ingest_burst_per_ip),
        per_site=Buckets(settings.ingest_rate_per_site, site_burst),
        url_query=settings.url_query,
    )


def make_processor(
    settings: Settings,
    log: EventLog,
    store: Store,
    fanout: Fanout,
    metrics: Metrics,
    gate: Gatekeeper,
) -> tuple[Processor, list[Callable[[], None]]]:
    """The processor with its pipeline (``processing_steps``: the one named list), and what
    to warm up before it takes traffic (the parsers' first runs)."""
    from hitstream.domain.sessions import Sessionizer
    from hitstream.enrich.bots import BotDetector
    from hitstream.enrich.useragent import UserAgentParser
    from hitstream.services.pipeline import Pipeline, processing_steps

    parser = UserAgentParser()
    bots = BotDetector(parser, allow_headless=settings.allow_headless)
    sessions = Sessionizer(settings.session_timeout_s * 1000)
    pipeline = Pipeline(processing_steps(store, parser, bots, sessions, gate), metrics)
    processor = Processor(
        log,
        store,
        fanout,
        pipeline,
        metrics,
        sessions=sessions,
        stream=log.stream,
        batch_max=settings.batch_max_events,
        poll_timeout=settings.batch_max_wait_ms / 1000,
        buffer_events=settings.write_buffer_events,
        buffer_s=settings.write_buffer_ms / 1000,
        retention_ms=settings.retention_days * 86_400_000,
    )
    return processor, [parser.warm_up, bots.warm_up]


def check_settings(settings: Settings) -> None:
    """What a process would only find wrong in its settings once started (the sites it
    registers, its alert rules and notifiers), found before anything starts or is spawned:
    ``ConfigError`` naming it."""
    sites_from(settings.sites, 0)
    if load_rules(settings.alert_rules):
        make_notifiers(settings.alert_notifiers)


def load_rules(raw: str) -> list[AlertRule]:
    """Rules from ``HITSTREAM_ALERT_RULES``: JSON text, or the path of a JSON file."""
    text = raw.strip()
    if not text:
        return []
    source = "HITSTREAM_ALERT_RULES"
    if text[0] not in "[{":
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read rules file {str(path)!r}: {exc}") from exc
        source = f"{source} ({str(path)!r})"
    try:
        return parse_rules(text)
    except QueryError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def make_alerting(
    store: Store,
    fanout: Fanout,
    *,
    rules: str,
    notifiers: str = "log://",
    interval_s: float = 10.0,
    registry: CollectorRegistry,
) -> Alerting | None:
    """The ``Alerting`` that settings describe, or None when there are no rules.

    Raises ``ConfigError`` naming the bad rule field or notifier URL, so that a process with
    a broken alert setup refuses to start instead of staying silent.
    """
    parsed = load_rules(rules)
    if not parsed:
        return None
    metrics = AlertingMetrics(registry)
    built = make_notifiers(notifiers, lambda name: metrics.notifier_failures.labels(name).inc())
    return Alerting(store, fanout, built, parsed, metrics, interval_s=interval_s)
