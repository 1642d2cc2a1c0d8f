"""The enrichment steps, with a fake user-agent parser and bot detector."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hitstream.domain.events import AcceptedEvent
from hitstream.domain.pipeline import Drop, UserAgentInfo, Working, start
from hitstream.domain.steps import (
    build_steps,
    drop_bot_with,
    put_referrer,
    put_user_agent_with,
    put_utm,
)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


DESKTOP = UserAgentInfo("Chrome", "120", "Windows", "10", "desktop")
BASE = AcceptedEvent(
    event_id="e1",
    site_id="shop",
    type="pageview",
    timestamp=1_700_000_000_000,
    received_at=1_700_000_000_100,
    visitor_id="v1",
    visitor_id_prev="v0",
    url="https://shop.example/pricing?utm_source=newsletter&utm_medium=email",
    hostname="shop.example",
    path="/pricing",
    query="utm_source=newsletter&utm_medium=email",
    user_agent=CHROME,
)


@dataclass
class FakeUserAgents:
    info: UserAgentInfo = DESKTOP
    seen: list[str] = field(default_factory=list)

    def parse(self, user_agent: str) -> UserAgentInfo:
        self.seen.append(user_agent)
        return self.info


@dataclass
class FakeBots:
    bots: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def bot_reason(self, user_agent: str) -> str | None:
        self.seen.append(user_agent)
        return self.bots.get(user_agent)


def working(*, user_agent: str = CHROME, referrer: str = "", query: str = BASE.query) -> Working:
    return start(replace(BASE, user_agent=user_agent, referrer=referrer, query=query))


def test_steps_are_named_and_ordered_bot_check_first() -> None:
    steps = build_steps(FakeUserAgents(), FakeBots())
    assert [name for name, _ in steps] == ["drop_bot", "put_user_agent", "put_utm", "put_referrer"]


def test_drop_bot_drops_with_the_detector_reason() -> None:
    bots = FakeBots({"Googlebot/2.1": "ua_pattern"})
    drop_bot = drop_bot_with(bots)
    assert drop_bot(working(user_agent="Googlebot/2.1")) == Drop("bot:ua_pattern")
    assert drop_bot(working()) is None
    assert bots.seen == ["Googlebot/2.1", CHROME]


def test_drop_bot_drops_empty_user_agents_without_asking_the_detector() -> None:
    bots = FakeBots()
    drop_bot = drop_bot_with(bots)
    assert drop_bot(working(user_agent="")) == Drop("bot:empty_ua")
    assert drop_bot(working(user_agent=" \t ")) == Drop("bot:empty_ua")
    assert bots.seen == []


def test_put_user_agent_copies_the_parsed_fields() -> None:
    user_agents = FakeUserAgents(UserAgentInfo("Safari", "17", "iOS", "17", "mobile"))
    event = working(user_agent="iPhone UA")
    assert put_user_agent_with(user_agents)(event) is None
    out = event.out
    assert (out.browser, out.browser_version, out.os, out.os_version, out.device) == (
        "Safari",
        "17",
        "iOS",
        "17",
        "mobile",
    )
    assert user_agents.seen == ["iPhone UA"]


def test_put_utm_fills_the_five_tags() -> None:
    event = working(
        query="utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=shoes&utm_content=a"
    )
    assert put_utm(event) is None
    out = event.out
    assert (out.utm_source, out.utm_medium, out.utm_campaign, out.utm_term, out.utm_content) == (
        "google",
        "cpc",
        "spring",
        "shoes",
        "a",
    )


def test_put_utm_leaves_tags_empty_without_a_query() -> None:
    event = working(query="")
    put_utm(event)
    assert event.out.utm_source == event.out.utm_medium == event.out.utm_campaign == ""


def test_put_referrer_fills_domain_source_and_channel_as_plain_strings() -> None:
    event = working(referrer="https://www.google.co.uk/", query="")
    assert put_referrer(event) is None
    assert (event.out.referrer_domain, event.out.source, event.out.channel) == (
        "google.co.uk",
        "Google",
        "Organic Search",
    )
    assert type(event.out.channel) is str


def test_put_referrer_lets_utm_win_and_ignores_self_referrals() -> None:
    event = working(referrer="https://shop.example/")
    put_referrer(event)
    assert (event.out.referrer_domain, event.out.source, event.out.channel) == (
        "",
        "Newsletter",
        "Email",
    )


def test_all_steps_enrich_a_realistic_event() -> None:
    event = working(
        referrer="https://l.facebook.com/l.php?u=x",
        query="fbclid=abc&utm_medium=paid&utm_campaign=launch",
    )
    for _, step in build_steps(FakeUserAgents(), FakeBots()):
        assert step(event) is None
    out = event.out
    assert (out.browser, out.device) == ("Chrome", "desktop")
    assert (out.source, out.channel, out.referrer_domain) == (
        "Facebook",
        "Paid Social",
        "l.facebook.com",
    )
    assert (out.utm_medium, out.utm_campaign) == ("paid", "launch")
    assert event.accepted.referrer == out.referrer
