"""The tables behind referrer attribution: well-known sites by kind, search brands, source
aliases, country second-level labels and ad click ids. Data, not rules: the rules that read
them are in ``hitstream.domain.referrers``; a site is added here without touching them.

Kinds are ``search``, ``social``, ``email``, ``ai`` and ``other``; channels are the values of
``hitstream.domain.referrers.Channel``.
"""

from __future__ import annotations

from typing import Final

# One line per site: "Name = host host ...". A host also covers its subdomains. Hand-written
# for hitstream (the usual referer-parser data is GPL); add sites here, keep lines sorted.
SITES: Final = {
    "search": """
        AOL = search.aol.com
        Ask = ask.com
        Baidu = baidu.com
        Bing = bing.com
        Brave Search = search.brave.com
        Daum = daum.net
        DuckDuckGo = duckduckgo.com ddg.gg
        Ecosia = ecosia.org
        Google = google.com com.google.android.googlequicksearchbox
        Kagi = kagi.com
        Mojeek = mojeek.com
        Naver = naver.com
        Qwant = qwant.com
        Seznam = seznam.cz
        So.com = so.com
        Sogou = sogou.com
        Startpage = startpage.com
        Yahoo = yahoo.com
        Yandex = yandex.ru yandex.com ya.ru
    """,
    "social": """
        Bluesky = bsky.app
        Discord = discord.com discordapp.com
        Facebook = facebook.com fb.com fb.me messenger.com com.facebook.katana
        Hacker News = news.ycombinator.com
        Instagram = instagram.com com.instagram.android
        LinkedIn = linkedin.com lnkd.in com.linkedin.android
        Lobsters = lobste.rs
        Mastodon = mastodon.social mastodon.online
        Pinterest = pinterest.com pin.it
        Quora = quora.com
        Reddit = reddit.com redd.it com.reddit.frontpage
        Slack = slack.com com.slack
        Snapchat = snapchat.com
        Telegram = t.me telegram.org org.telegram.messenger
        Threads = threads.net threads.com
        TikTok = tiktok.com
        Tumblr = tumblr.com
        Twitter = twitter.com x.com t.co com.twitter.android
        VK = vk.com
        Weibo = weibo.com
        WhatsApp = whatsapp.com wa.me
        YouTube = youtube.com youtu.be com.google.android.youtube
    """,
    "email": """
        AOL Mail = mail.aol.com
        Fastmail = fastmail.com
        GMX = gmx.net gmx.de gmx.com
        Gmail = mail.google.com com.google.android.gm
        iCloud Mail = icloud.com
        Mail.ru = e.mail.ru
        Outlook = outlook.live.com outlook.office.com outlook.office365.com
        Outlook = com.microsoft.office.outlook
        Proton Mail = mail.proton.me mail.protonmail.com
        Yahoo Mail = mail.yahoo.com
        Yandex Mail = mail.yandex.ru mail.yandex.com
        Zoho Mail = mail.zoho.com mail.zoho.eu
    """,
    "ai": """
        ChatGPT = chatgpt.com chat.openai.com
        Claude = claude.ai
        Copilot = copilot.microsoft.com copilot.cloud.microsoft
        DeepSeek = deepseek.com
        Gemini = gemini.google.com bard.google.com
        Grok = grok.com
        Meta AI = meta.ai
        Mistral = chat.mistral.ai
        Perplexity = perplexity.ai
        Phind = phind.com
        Poe = poe.com
        You.com = you.com
    """,
    "other": """
        GitHub = github.com
        GitLab = gitlab.com
        Google Docs = docs.google.com
        Google Play = play.google.com
        Google Sites = sites.google.com
        Medium = medium.com
        Product Hunt = producthunt.com
        Stack Overflow = stackoverflow.com
        Substack = substack.com
        Wikipedia = wikipedia.org
    """,
}
BRANDS: Final = "google bing yahoo yandex baidu duckduckgo ecosia qwant startpage pinterest"
"""Sites whose name matches under any suffix: google.de, google.co.uk, yahoo.co.jp ..."""
ALIASES: Final = {
    "Google": "adwords googleads google_ads",
    "Facebook": "fb meta",
    "Instagram": "ig insta",
    "YouTube": "yt",
    "LinkedIn": "li",
    "Twitter": "x tw",
    "Hacker News": "hn hackernews ycombinator",
    "ChatGPT": "openai",
    "Gemini": "bard",
    "DuckDuckGo": "ddg",
}
SECOND_LEVEL: Final = frozenset(
    ("co", "com", "net", "org", "ac", "gov", "edu", "gob", "ne", "or", "go")
)
"""Second-level labels under a two-letter country code that form one suffix (co.uk, com.au)."""
CLICK_IDS: Final = {
    "gclid": ("Google", "search", "Paid Search"),
    "gbraid": ("Google", "search", "Paid Search"),
    "wbraid": ("Google", "search", "Paid Search"),
    "dclid": ("Google", "search", "Paid Other"),
    "msclkid": ("Bing", "search", "Paid Search"),
    "yclid": ("Yandex", "search", "Paid Search"),
    "fbclid": ("Facebook", "social", None),
    "ttclid": ("TikTok", "social", "Paid Social"),
    "twclid": ("Twitter", "social", "Paid Social"),
    "li_fat_id": ("LinkedIn", "social", "Paid Social"),
    "sccid": ("Snapchat", "social", "Paid Social"),
    "rdt_cid": ("Reddit", "social", "Paid Social"),
    "epik": ("Pinterest", "social", "Paid Social"),
}
"""Ad click ids (lowercase): the platform's name and kind, and the paid channel they prove
(None: the id is no proof of a paid click)."""
