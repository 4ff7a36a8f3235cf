"""What a stack does once before its workers start: migrations, the demo event, the banner;
and the one-off rebuild of an event's seat state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.booking.inventory import Inventory
from server.core.keys import EventKeys
from server.core.messages import EventCreate, SectionIn
from server.core.settings import Settings, SettingsError
from server.notify.transport import make_transport
from server.ops import catalog
from server.store import db
from server.store.redis_client import close_redis, make_redis
from server.waiting.room import Room

DEMO_ID = "demo"


def demo_event(now: datetime) -> EventCreate:
    return EventCreate(
        id=DEMO_ID,
        name="Boxoffice Demo Night",
        venue="Loopback Arena",
        starts_at=now + timedelta(days=30),
        sale_starts_at=now + timedelta(minutes=1),
        prequeue_opens_at=now,
        currency="EUR",
        sections=[
            SectionIn(id="A", name="Floor", price=5000, rows=10, seats_per_row=20),
            SectionIn(id="GA", name="Standing", price=3500, capacity=500),
        ],
        rate_per_min=60,
        max_active=50,
    )


async def prepare(settings: Settings, demo: bool) -> None:
    """Migrations and the demo event, once, before any worker starts."""
    await migrate(settings)
    pool = await db.create_pool(settings.database_url, 2, settings.database_pooler)
    redis = make_redis(settings)
    try:
        if demo:
            await db.delete_event(pool, DEMO_ID)
            room = Room.of(settings, redis, pool)
            await redis.delete(*EventKeys(DEMO_ID).all())
            await catalog.create(room, demo_event(datetime.now(UTC)))
    finally:
        await pool.close()
        await close_redis(redis)


async def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations on a direct connection to the primary (never through a pooler:
    see server.store.db.MIGRATION_LOCK); the names applied."""
    if settings.database_pooler != "none" and not settings.database_migrate_url:
        raise SettingsError(
            f"BOXOFFICE_DATABASE_POOLER={settings.database_pooler}: migrations need "
            "DATABASE_MIGRATE_URL, a direct connection to the primary"
        )
    pool = await db.create_pool(settings.migrate_url, 1)
    try:
        return await db.migrate(pool)
    finally:
        await pool.close()


async def rebuild_inventory(settings: Settings, event_id: str) -> int:
    pool = await db.create_pool(settings.database_url, 2, settings.database_pooler)
    redis = make_redis(settings)
    try:
        if await db.get_event(pool, event_id) is None:
            raise SystemExit(f"boxoffice: no event {event_id!r}")
        return await Inventory(redis).rebuild(EventKeys(event_id), pool, force=True)
    finally:
        await pool.close()
        await close_redis(redis)


def banner(settings: Settings, demo: bool, filled: frozenset[str]) -> str:
    """What start-up prints. The admin token only in dev mode (in production it would end up in
    journald or container logs), marked generated only when it came from dev-secrets.json."""
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        f"Boxoffice is running at {base}/  ({settings.workers} worker(s), {settings.mode} mode)",
    ]
    if demo:
        lines.append(f"  fan page (demo event, sale opens in 1 minute): {base}/e/{DEMO_ID}")
    lines.append(f"  ops console: {base}/admin   admin API: {base}/api/admin/events")
    if settings.mode == "dev":
        generated = "admin_token" in filled
        lines += [
            f"  admin token: {settings.admin_token}"
            + (
                "   (generated for development; set BOXOFFICE_ADMIN_TOKEN)"
                if generated
                else "   (from BOXOFFICE_ADMIN_TOKEN)"
            ),
            f"  e.g. curl -H 'Authorization: Bearer {settings.admin_token}' "
            f"{base}/api/admin/events/{DEMO_ID if demo else '<id>'}/stats",
        ]
    else:
        lines.append("  admin token: the one in BOXOFFICE_ADMIN_TOKEN (not printed in production)")
    lines += [
        f"  metrics: {base}/metrics   health: {base}/readyz   API: {base}/api/openapi.json",
        f"  mail: {make_transport(settings).description}",
        "",
    ]
    return "\n".join(lines)
