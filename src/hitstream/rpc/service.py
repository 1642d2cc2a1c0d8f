"""The ``hitstream.v1.Stats`` servicer: each call is its HTTP route's work, answered in protobuf.

A call resolves its caller from the metadata, asks the gatekeeper (``READ_STATS`` on the
site, exactly as the HTTP route does, before looking at the rest of the question), builds the
``StatsQuery`` the HTTP route would (``rpc.queries``), asks the same ``StatsService`` (the same
cache, keyed by the same query) and copies its JSON-ready answer into the reply message, so
the numbers are the HTTP API's by construction. Errors become statuses in ``rpc.status``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from hitstream.domain.access import Action
from hitstream.domain.errors import HitstreamError, QueryError
from hitstream.domain.stats import StatsQuery, check_zone
from hitstream.metrics import Metrics
from hitstream.rpc import queries
from hitstream.rpc.status import credentials, status_of, trailers
from hitstream.rpc.v1 import stats_pb2 as pb
from hitstream.rpc.v1 import stats_pb2_grpc
from hitstream.services.access import Gatekeeper
from hitstream.services.stats import StatsService

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
JSON = dict[str, Any]
_Reply = TypeVar("_Reply")


def _range(body: JSON) -> pb.Range:
    return pb.Range(from_ms=int(body["from"]), to_ms=int(body["to"]))


def _values(row: JSON, names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(row[name]) for name in names}


class StatsServicer(stats_pb2_grpc.StatsServicer):
    """Answers the Stats service with the HTTP API's services; counts every call."""

    def __init__(self, stats: StatsService, gate: Gatekeeper, metrics: Metrics) -> None:
        self.stats = stats
        self.gate = gate
        self.metrics = metrics

    async def _call(
        self, method: str, context: Context, answer: Callable[[], Awaitable[_Reply]]
    ) -> _Reply:
        """Run one call; an error ends it with its status (and is counted): a hitstream
        error's own, anything else (a bug) ``INTERNAL`` with "internal error" (it ended as
        ``UNKNOWN`` naming the Python exception, and was not counted)."""
        try:
            reply = await answer()
        except Exception as exc:
            if isinstance(exc, HitstreamError):
                code, status, field, reason = status_of(exc)
            else:
                code, status, field, reason = (
                    grpc.StatusCode.INTERNAL,
                    500,
                    "service",
                    "internal error",
                )
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
            else:
                self.metrics.requests_rejected.labels(str(status), field).inc()
            self.metrics.grpc_calls.labels(method, code.name).inc()
            await context.abort(code, f"{field}: {reason}", trailers(field, reason))
        self.metrics.grpc_calls.labels(method, grpc.StatusCode.OK.name).inc()
        return reply

    async def _readable(self, context: Context, site_id: str) -> str:
        """Check that the caller may read the site (as the HTTP routes do, first); the
        site's time zone."""
        queries.check_site_id(site_id)
        caller = await self.gate.resolve(credentials(context.invocation_metadata()))
        site = await self.gate.check(caller.principal, Action.READ_STATS, site_id)
        return site.timezone if site is not None else "UTC"

    async def _query(
        self, context: Context, fields: queries.PeriodFields, **params: Any
    ) -> StatsQuery:
        zone = await self._readable(context, fields.site_id)
        now_ms = self.stats.now_ms(fields.period or None)
        tz = check_zone(fields.tz) if fields.tz else zone  # given: a place's zone
        return queries.build(fields, now_ms=now_ms, tz=tz, **params)

    async def Aggregate(  # method names are the .proto's
        self, request: pb.AggregateRequest, context: Context
    ) -> pb.AggregateReply:
        async def answer() -> pb.AggregateReply:
            query = await self._query(
                context, request, metrics=request.metrics, compare=request.compare
            )
            body = await self.stats.aggregate(query)
            reply = pb.AggregateReply(site_id=body["site_id"], range=_range(body))
            for name, entry in body["results"].items():
                value = reply.results[name]
                value.value = float(entry["value"])
                if "previous" in entry:
                    value.previous = float(entry["previous"])
                if entry.get("change") is not None:
                    value.change = float(entry["change"])
            if "compare" in body:
                reply.compare.CopyFrom(_range(body["compare"]))
            return reply

        return await self._call("Aggregate", context, answer)

    async def Timeseries(
        self, request: pb.TimeseriesRequest, context: Context
    ) -> pb.TimeseriesReply:
        async def answer() -> pb.TimeseriesReply:
            query = await self._query(
                context, request, metrics=request.metrics, interval=request.interval
            )
            body = await self.stats.timeseries(query)
            return pb.TimeseriesReply(
                site_id=body["site_id"],
                range=_range(body),
                interval=body["interval"],
                results=[
                    pb.Point(bucket=int(p["bucket"]), metrics=_values(p, query.metrics))
                    for p in body["results"]
                ],
            )

        return await self._call("Timeseries", context, answer)

    async def Breakdown(self, request: pb.BreakdownRequest, context: Context) -> pb.BreakdownReply:
        async def answer() -> pb.BreakdownReply:
            if not request.property:
                queries.check_site_id(request.site_id)
                raise QueryError("property", "is required")
            query = await self._query(
                context,
                request,
                metrics=request.metrics,
                property=request.property,
                limit=request.limit,
            )
            body = await self.stats.breakdown(query)
            return pb.BreakdownReply(
                site_id=body["site_id"],
                range=_range(body),
                property=body["property"],
                results=[
                    pb.Row(value=str(r["value"]), metrics=_values(r, query.metrics))
                    for r in body["results"]
                ],
            )

        return await self._call("Breakdown", context, answer)

    async def Realtime(self, request: pb.RealtimeRequest, context: Context) -> pb.RealtimeReply:
        async def answer() -> pb.RealtimeReply:
            await self._readable(context, request.site_id)
            body = await self.stats.realtime(request.site_id)
            return pb.RealtimeReply(site_id=body["site_id"], visitors=int(body["visitors"]))

        return await self._call("Realtime", context, answer)

    async def _counts(self, query: StatsQuery) -> pb.EventCountsReply:
        body = await self.stats.breakdown(query)
        return pb.EventCountsReply(
            site_id=body["site_id"],
            range=_range(body),
            property=body["property"],
            results=[
                pb.EventCount(
                    value=str(r["value"]), events=int(r["events"]), visitors=int(r["visitors"])
                )
                for r in body["results"]
            ],
        )

    async def UserEvents(
        self, request: pb.UserEventsRequest, context: Context
    ) -> pb.EventCountsReply:
        async def answer() -> pb.EventCountsReply:
            query = await self._query(
                context, request, metrics=queries.COUNTS, property="user_id", limit=request.limit
            )
            if request.user_id:
                query = queries.with_filter(query, queries.user_filter(request.user_id))
            return await self._counts(query)

        return await self._call("UserEvents", context, answer)

    async def PageEvents(
        self, request: pb.PageEventsRequest, context: Context
    ) -> pb.EventCountsReply:
        async def answer() -> pb.EventCountsReply:
            query = await self._query(
                context, request, metrics=queries.COUNTS, property="page", limit=request.limit
            )
            for clause in queries.page_filters(request.page_url) if request.page_url else ():
                query = queries.with_filter(query, clause)
            return await self._counts(query)

        return await self._call("PageEvents", context, answer)
