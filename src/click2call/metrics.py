"""Prometheus metrics: counted from stored call changes, read live from engines and the outbox.

One `CollectorRegistry` per Runtime (never prometheus-client's global one), so two
runtimes in one process — tests, or several apps — count separately.

- calls: `click2call_calls_placed_total{tenant}`, `click2call_calls_ended_total{tenant,result}`,
  `click2call_active_calls{tenant}` (the engine's count);
- setup time: `click2call_call_setup_seconds{tenant}` (request → connected) and
  `click2call_destination_dial_delay_seconds{tenant}` (agent answered → destination
  dialled, from the two events' timestamps);
- `click2call_engine_up{tenant,engine}`; `click2call_webhook_backlog` (pending deliveries);
  `click2call_webhook_deliveries_total{outcome}`;
- `click2call_audit_rows_dropped_total` (past the audit backlog during a database outage);
- `click2call_http_request_duration_seconds{method,route,status}` (route template).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from click2call.calls import CallState
from click2call.engines.base import EngineHealth
from click2call.store import Change

# Seconds; a two-leg call takes a few to tens of seconds to connect, a bridge milliseconds.
SETUP_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120)
DIAL_DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Live(Collector):
    """Values read at scrape time: what the engines and the outbox hold right now."""

    def __init__(
        self,
        health: Callable[[], Mapping[str, EngineHealth]],
        backlog: Callable[[], int],
        audit_dropped: Callable[[], int],
    ) -> None:
        self._health = health
        self._backlog = backlog
        self._audit_dropped = audit_dropped

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "click2call_active_calls", "Calls the engine is handling", labels=["tenant"]
        )
        up = GaugeMetricFamily(
            "click2call_engine_up",
            "1 when the tenant's engine is connected (or bound) and taking calls",
            labels=["tenant", "engine"],
        )
        for tenant, health in self._health().items():
            active.add_metric([tenant], health.active_calls)
            up.add_metric([tenant, health.name], 1 if health.ok else 0)
        yield active
        yield up
        yield GaugeMetricFamily(
            "click2call_webhook_backlog", "Webhook deliveries not yet made", self._backlog()
        )
        yield CounterMetricFamily(
            "click2call_audit_rows_dropped",
            "Audit rows dropped: more were waiting for the database than the backlog holds",
            self._audit_dropped(),
        )


class Metrics:
    def __init__(
        self,
        health: Callable[[], Mapping[str, EngineHealth]],
        backlog: Callable[[], int],
        audit_dropped: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._placed = Counter(
            "click2call_calls_placed", "Calls stored", ["tenant"], registry=registry
        )
        self._ended = Counter(
            "click2call_calls_ended",
            "Calls ended, by result",
            ["tenant", "result"],
            registry=registry,
        )
        self._setup = Histogram(
            "click2call_call_setup_seconds",
            "From the request to both legs connected",
            ["tenant"],
            buckets=SETUP_BUCKETS,
            registry=registry,
        )
        self._dial_delay = Histogram(
            "click2call_destination_dial_delay_seconds",
            "From the agent's answer to the destination being dialled",
            ["tenant"],
            buckets=DIAL_DELAY_BUCKETS,
            registry=registry,
        )
        self._deliveries = Counter(
            "click2call_webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "click2call_http_request_duration_seconds",
            "HTTP requests, by route template",
            ["method", "route", "status"],
            registry=registry,
        )
        registry.register(_Live(health, backlog, audit_dropped))

    def on_change(self, change: Change) -> None:
        """A tracking listener: count the stored change."""
        call, event = change.call, change.event
        if event.sequence == 1:
            self._placed.labels(call.tenant).inc()
        if event.state is CallState.ENDED:
            result = call.result.value if call.result else "unknown"
            self._ended.labels(call.tenant, result).inc()
        elif event.state is CallState.CONNECTED:
            seconds = (event.at - call.created_at).total_seconds()
            self._setup.labels(call.tenant).observe(max(seconds, 0.0))
        elif event.state is CallState.DESTINATION_DIALING and call.agent_answered_at:
            seconds = (event.at - call.agent_answered_at).total_seconds()
            self._dial_delay.labels(call.tenant).observe(max(seconds, 0.0))

    def delivery(self, outcome: str) -> None:
        """The webhook worker's hook: one attempt ended with `outcome`."""
        self._deliveries.labels(outcome).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (reads the outbox: not on the loop)."""
        return generate_latest(self.registry)
