"""The processor's event steps: bot filter, user agent, UTM tags, referrer and channel, visit.

Each step takes a ``Working`` event, fills part of its processed row in place and returns
``None``, or returns a ``Drop`` to stop the event. The enrichment steps read only the accepted
event, never another step's output, so any one of them can be run, timed or tested alone. The
two that need a parser from outside the standard library get it from ``build_steps`` as a
Protocol. ``put_session`` runs last: it reads what enrichment filled (a visit takes its first
event's source) and holds state, the open visits (``Sessionizer``).
"""

from __future__ import annotations

from hitstream.domain.events import is_engagement
from hitstream.domain.pipeline import BotDetector, Drop, Step, UserAgentParser, Working
from hitstream.domain.referrers import classify, parse_campaign
from hitstream.domain.sessions import Sessionizer

EMPTY_UA = Drop("bot:empty_ua")


def drop_bot_with(bots: BotDetector) -> Step:
    """A ``drop_bot`` step: crawlers, HTTP libraries, headless browsers and empty UAs stop here.

    Runs first so no other step spends time on traffic that is never counted; the drop reason
    is ``bot:<detector reason>`` (``bot:ua_pattern``, ``bot:headless`` ...).
    """

    def drop_bot(working: Working) -> Drop | None:
        user_agent = working.accepted.user_agent
        if not user_agent or user_agent.isspace():
            return EMPTY_UA
        reason = bots.bot_reason(user_agent)
        return None if reason is None else Drop(f"bot:{reason}")

    return drop_bot


def put_user_agent_with(user_agents: UserAgentParser) -> Step:
    """A ``put_user_agent`` step: browser, OS (major versions) and device class."""

    def put_user_agent(working: Working) -> Drop | None:
        info = user_agents.parse(working.accepted.user_agent)
        out = working.out
        out.browser = info.browser
        out.browser_version = info.browser_version
        out.os = info.os
        out.os_version = info.os_version
        out.device = info.device
        return None

    return put_user_agent


def put_utm(working: Working) -> Drop | None:
    """The five ``utm_*`` tags of the landing URL's query, trimmed, as sent."""
    campaign = parse_campaign(working.accepted.query)
    out = working.out
    out.utm_source = campaign.source
    out.utm_medium = campaign.medium
    out.utm_campaign = campaign.campaign
    out.utm_term = campaign.term
    out.utm_content = campaign.content
    return None


def put_referrer(working: Working) -> Drop | None:
    """Referrer domain, source and channel, decided together (``hitstream.domain.referrers``).

    Source and channel are one decision (UTM tags and ad click ids override the referrer), so
    this one step fills both; ``put_channel`` is not a separate step.
    """
    accepted = working.accepted
    attribution = classify(accepted.referrer, accepted.hostname, parse_campaign(accepted.query))
    out = working.out
    out.referrer_domain = attribution.referrer_domain
    out.source = attribution.source
    out.channel = attribution.channel.value
    return None


def put_session_with(sessions: Sessionizer) -> Step:
    """A ``put_session`` step: the event joins its visit (continued or new), gets its
    ``session_id`` and the visit's acquisition. Stateful: the runner reloads ``sessions`` from
    the store after any failed attempt, so a half-done batch leaves no trace in it."""

    def put_session(working: Working) -> Drop | None:
        if is_engagement(working.out.type):  # a measurement joins a visit, never makes one
            sessions.attach(working.out, working.accepted.visitor_id_prev)
        else:
            sessions.assign(working.out, working.accepted.visitor_id_prev)
        return None

    return put_session


def build_steps(user_agents: UserAgentParser, bots: BotDetector) -> list[tuple[str, Step]]:
    """The enrichment steps in the order they run, each with its name (bot check first)."""
    return [
        ("drop_bot", drop_bot_with(bots)),
        ("put_user_agent", put_user_agent_with(user_agents)),
        ("put_utm", put_utm),
        ("put_referrer", put_referrer),
    ]
