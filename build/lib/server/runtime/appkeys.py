"""Typed keys of the objects an application holds."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from server.store import db
from server.booking.service import Booking
from server.waiting.fanout import Hub
from server.core.metrics import Metrics
from server.waiting.room import Room
from server.core.settings import Settings
from server.runtime.tasks import Ticker

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
POOL = web.AppKey("pool", db.Pool)
ROOM = web.AppKey("room", Room)
HUB = web.AppKey("hub", Hub)
TICKER = web.AppKey("ticker", Ticker)
BOOKING = web.AppKey("booking", Booking)
METRICS = web.AppKey("metrics", Metrics)
