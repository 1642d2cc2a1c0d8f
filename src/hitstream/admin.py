"""The ``hitstream sites | users | keys | goals | forget`` commands: the registry from a terminal.

Each command reads the same settings as ``serve`` (``--data-dir``, ``HITSTREAM_DATA_DIR``,
``HITSTREAM_STORE_URL``) and works before ``serve`` starts and while it runs: an embedded
store held by a running ``serve`` is reached through its control socket
(``bootstrap.open_store``), so no restart is needed, and every running process sees the change
within a second. Secrets are printed once (keys) or read without echo (passwords).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder [env HITSTREAM_DATA_DIR]")
]
UmamiId = Annotated[
    str | None,
    typer.Option(
        "--umami-website-id",
        help="The data-website-id of Umami's tracker on this site's pages ('' to clear)",
    ),
]
sites_app = typer.Typer(help="Register and configure sites.", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard users (admins and viewers).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (Authorization: Bearer KEY).", no_args_is_help=True)
goals_app = typer.Typer(help="Goals: pageview patterns and custom events.", no_args_is_help=True)


def _run(data_dir: Path | None, job: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``job(store)`` on the configured store; a refusal is printed, exit code 1."""
    from hitstream.bootstrap import open_store
    from hitstream.errors import AdapterUnavailable, Conflict, NotFound, QueryError
    from hitstream.settings import Settings

    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    if not settings.store_url and not settings.data_dir.exists():
        # a command run from another folder made an empty store there, silently, and a user
        # added there was in no server's store
        typer.echo(
            f"note: no data folder at {settings.data_dir.resolve()}: a new, empty store is made "
            "there (the server's: --data-dir or HITSTREAM_DATA_DIR)",
            err=True,
        )

    async def go() -> T:
        async with open_store(settings) as store:
            return await job(store)

    try:
        return asyncio.run(go())
    except (QueryError, Conflict, NotFound) as exc:
        typer.echo(f"error: {exc.field}: {exc.reason}", err=True)
        raise typer.Exit(1) from None
    except AdapterUnavailable as exc:
        typer.echo(f"error: the store is not available: {exc}", err=True)
        raise typer.Exit(1) from None


def _hosts(text: str | None) -> list[str] | None:
    return None if text is None else [h.strip() for h in text.split(",") if h.strip()]


def _show_site(site: Any) -> str:
    return (
        f"{site.site_id}\ttz={site.timezone}\thosts={','.join(site.hosts())}\t"
        f"retention={site.retention_days or 'forever'}\t{'public' if site.public else 'private'}"
        + (f"\tumami={site.umami_website_id}" if site.umami_website_id else "")
    )


# -- sites ---------------------------------------------------------------------------------


@sites_app.command("add")
def sites_add(
    domain: Annotated[str, typer.Argument(help="The site's domain: its site_id")],
    timezone: Annotated[str | None, typer.Option(help="IANA time zone (default UTC)")] = None,
    allowed_hosts: Annotated[
        str | None, typer.Option(help="Comma-separated hosts (default: the domain and subdomains)")
    ] = None,
    retention_days: Annotated[int | None, typer.Option(help="Delete data older (0: keep)")] = None,
    public: Annotated[bool, typer.Option("--public", help="Anyone may read its dashboard")] = False,
    umami_website_id: UmamiId = None,
    data_dir: DataDir = None,
) -> None:
    """Register a site, and print the snippet to paste into its pages."""
    import time

    from hitstream.domain.sites import check_unlike, new_site

    data: dict[str, object] = {"site_id": domain, "public": public}
    if timezone is not None:
        data["timezone"] = timezone
    if allowed_hosts is not None:
        data["allowed_hosts"] = _hosts(allowed_hosts)
    if retention_days is not None:
        data["retention_days"] = retention_days
    if umami_website_id is not None:
        data["umami_website_id"] = umami_website_id

    async def job(store: Any) -> Any:
        site = new_site(data, int(time.time() * 1000))
        check_unlike(site.site_id, [s.site_id for s in await store.registered_sites()])
        await store.add_site(site)
        return site

    from hitstream.settings import Settings

    site = _run(data_dir, job)
    events = Settings().events_url()  # HITSTREAM_COLLECTOR_URL: where browsers send
    api = f' data-api="{events}"' if events else ""
    typer.echo(f"added {_show_site(site)}")
    typer.echo("paste into every page of the site (with this server's address):")
    typer.echo(
        f'<script defer data-site="{site.site_id}"{api} '
        'src="http://HOST:PORT/js/hitstream.js"></script>'
    )


@sites_app.command("list")
def sites_list(data_dir: DataDir = None) -> None:
    """List the registered sites."""

    async def job(store: Any) -> list[Any]:
        result: list[Any] = await store.registered_sites()
        return result

    for site in _run(data_dir, job):
        typer.echo(_show_site(site))


@sites_app.command("update")
def sites_update(
    domain: str,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone")] = None,
    allowed_hosts: Annotated[
        str | None, typer.Option(help="Comma-separated hosts ('' for the default)")
    ] = None,
    retention_days: Annotated[int | None, typer.Option(help="Delete data older (0: keep)")] = None,
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Public dashboard")
    ] = None,
    umami_website_id: UmamiId = None,
    data_dir: DataDir = None,
) -> None:
    """Change a site's settings (what is not given stays)."""
    from hitstream.domain.errors import NotFound
    from hitstream.domain.sites import changed_site

    changes: dict[str, object] = {}
    if timezone is not None:
        changes["timezone"] = timezone
    if allowed_hosts is not None:
        changes["allowed_hosts"] = _hosts(allowed_hosts)
    if retention_days is not None:
        changes["retention_days"] = retention_days
    if public is not None:
        changes["public"] = public
    if umami_website_id is not None:
        changes["umami_website_id"] = umami_website_id

    async def job(store: Any) -> Any:
        site = await store.get_site(domain)
        if site is None:
            raise NotFound("site_id", f"{domain} is not a registered site")
        changed = changed_site(site, changes)
        await store.update_site(changed)
        return changed

    typer.echo(f"updated {_show_site(_run(data_dir, job))}")


@sites_app.command("remove")
def sites_remove(
    domain: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    data_dir: DataDir = None,
) -> None:
    """Remove a site and delete ALL its data: events, visits, rollups, keys, links."""
    if not yes:
        if not sys.stdin.isatty():
            typer.echo("error: removing a site deletes its data: confirm with --yes", err=True)
            raise typer.Exit(1)
        typer.confirm(f"Delete {domain} and every event, visit, key and link of it?", abort=True)

    async def job(store: Any) -> bool:
        result: bool = await store.remove_site(domain)
        return result

    if not _run(data_dir, job):
        typer.echo(f"error: site_id: {domain} is not a registered site", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {domain} and all its data")


# -- users ---------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    email: str,
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read their sites)")],
    sites: Annotated[str, typer.Option(help="Comma-separated sites a viewer may read")] = "",
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file (first line)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Add a dashboard user (the password is asked for, or read from --password-file)."""
    from hitstream.services.accounts import Accounts

    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    listed = [s.strip() for s in sites.split(",") if s.strip()]

    async def job(store: Any) -> Any:
        return await Accounts(store).add_user(email, role, listed, password)

    user = _run(data_dir, job)
    typer.echo(
        f"added {user.email} ({user.role}{': ' + ', '.join(user.sites) if user.sites else ''})"
    )


@users_app.command("list")
def users_list(data_dir: DataDir = None) -> None:
    """List the users."""

    async def job(store: Any) -> list[Any]:
        result: list[Any] = await store.users()
        return result

    for user in _run(data_dir, job):
        typer.echo(f"{user.email}\t{user.role}\t{','.join(user.sites)}")


@users_app.command("remove")
def users_remove(email: str, data_dir: DataDir = None) -> None:
    """Remove a user (and their logins)."""

    async def job(store: Any) -> bool:
        result: bool = await store.remove_user(email.strip().lower())
        return result

    if not _run(data_dir, job):
        typer.echo(f"error: email: {email} has no account", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {email}")


# -- keys ----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    site: Annotated[str, typer.Option(help="The site (or '*' for an admin key of every site)")],
    scope: Annotated[str, typer.Option(help="read, write or admin")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create an API key and print it once: only its hash is kept."""
    from hitstream.services.accounts import Accounts

    async def job(store: Any) -> Any:
        return await Accounts(store).create_key(site, scope, name)

    token, key = _run(data_dir, job)
    typer.echo(token)
    typer.echo(
        f"key {key.key_id} ({key.scope} on {key.site_id}): shown once, keep it safe", err=True
    )


@keys_app.command("list")
def keys_list(
    site: Annotated[str | None, typer.Option(help="Only this site's keys")] = None,
    data_dir: DataDir = None,
) -> None:
    """List keys (their ids and prefixes, never the keys)."""

    async def job(store: Any) -> list[Any]:
        result: list[Any] = await store.keys(site)
        return result

    for key in _run(data_dir, job):
        state = "revoked" if key.revoked else "active"
        typer.echo(f"{key.key_id}\t{key.prefix}…\t{key.site_id}\t{key.scope}\t{state}\t{key.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key: it stops working within a second on every process."""

    async def job(store: Any) -> bool:
        result: bool = await store.revoke_key(key_id)
        return result

    if not _run(data_dir, job):
        typer.echo(f"error: key_id: no key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


# -- data rights ---------------------------------------------------------------------------


def forget(
    site: Annotated[str, typer.Option(help="The site")],
    user_id: Annotated[str, typer.Option(help="The user_id the site sent with the events")],
    data_dir: DataDir = None,
) -> None:
    """Delete every stored event of an identified user, with their visits, and correct the
    rollups and cached stats: stats are then as if those events never arrived."""

    async def job(store: Any) -> int:
        from hitstream.domain.sites import check_forgotten_user

        check_forgotten_user(user_id, "user-id")  # before anything: "" is every anonymous event
        if await store.get_site(site) is None:
            from hitstream.domain.errors import NotFound

            raise NotFound("site", f"{site} is not a registered site")
        import time

        result: int = await store.forget_user(site, user_id, int(time.time() * 1000))
        return result

    removed = _run(data_dir, job)
    typer.echo(f"forgot user {user_id!r} on {site}: {removed} event(s) deleted")


# -- goals ---------------------------------------------------------------------------------


async def _registered(store: Any, domain: str) -> None:
    from hitstream.domain.errors import NotFound

    if await store.get_site(domain) is None:
        raise NotFound("site_id", f"{domain} is not a registered site")


def _show_goal(goal: Any) -> str:
    if goal.page:
        return f"{goal.name}\tpage={goal.page}"
    props = "".join(f"\t{k}={v}" for k, v in goal.props)
    return f"{goal.name}\tevent_name={goal.event_name}{props}"


@goals_app.command("add")
def goals_add(
    domain: Annotated[str, typer.Argument(help="The site's domain: its site_id")],
    name: Annotated[str, typer.Option("--name", help="Display name, unique on the site")],
    event_name: Annotated[
        str | None, typer.Option("--event-name", help="A custom-event goal: the event's name")
    ] = None,
    prop: Annotated[
        list[str] | None,
        typer.Option("--prop", help="k=v: a property value the event must carry (repeatable)"),
    ] = None,
    page: Annotated[
        str | None,
        typer.Option("--page", help="A pageview goal: path pattern (* in a segment, ** any)"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Add a goal: --event-name E [--prop k=v ...] or --page PATTERN."""
    from hitstream.domain.goals import check_new_name, new_goal

    data: dict[str, object] = {"name": name}
    if page is not None:
        data["page"] = page
    if event_name is not None:
        data["event_name"] = event_name
    if prop:
        pairs = [p.partition("=") for p in prop]
        if any(not k or not eq for k, eq, _ in pairs):
            typer.echo("error: props: give each --prop as key=value", err=True)
            raise typer.Exit(1)
        data["props"] = {k: v for k, _, v in pairs}

    async def job(store: Any) -> Any:
        await _registered(store, domain)
        goal = new_goal(data)
        check_new_name(goal.name, [g.name for g in await store.goals(domain)])
        await store.add_goal(domain, goal)
        return goal

    typer.echo(f"added {_show_goal(_run(data_dir, job))}")


@goals_app.command("list")
def goals_list(
    domain: Annotated[str, typer.Argument(help="The site's domain")], data_dir: DataDir = None
) -> None:
    """List a site's goals."""

    async def job(store: Any) -> list[Any]:
        await _registered(store, domain)
        result: list[Any] = await store.goals(domain)
        return result

    for goal in _run(data_dir, job):
        typer.echo(_show_goal(goal))


@goals_app.command("remove")
def goals_remove(
    domain: Annotated[str, typer.Argument(help="The site's domain")],
    name: Annotated[str, typer.Argument(help="The goal's name")],
    data_dir: DataDir = None,
) -> None:
    """Remove a goal."""
    from hitstream.domain.errors import NotFound

    async def job(store: Any) -> None:
        await _registered(store, domain)
        if not await store.remove_goal(domain, name):
            raise NotFound("name", f"{domain} has no goal named {name!r}")

    _run(data_dir, job)
    typer.echo(f"removed goal {name} of {domain}")


def install(app: typer.Typer) -> None:
    """Add these commands to the ``hitstream`` command."""
    app.add_typer(sites_app, name="sites")
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    app.add_typer(goals_app, name="goals")
    app.command("forget")(forget)
