"""Typed keys of the objects an application holds."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from . import db
from .booking import Booking
from .fanout import Hub
from .metrics import Metrics
from .room import Room
from .settings import Settings
from .ticker import Ticker

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
POOL = web.AppKey("pool", db.Pool)
ROOM = web.AppKey("room", Room)
HUB = web.AppKey("hub", Hub)
TICKER = web.AppKey("ticker", Ticker)
BOOKING = web.AppKey("booking", Booking)
METRICS = web.AppKey("metrics", Metrics)
