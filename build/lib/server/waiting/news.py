"""News between processes over Redis pub/sub: admissions for the sockets each process holds,
settings changes (re-read the event, close sockets of an ended sale), confirmed orders."""

from __future__ import annotations

import logging

import msgspec

from server.core.keys import EVENTS_CHANNEL, NEWS_PATTERN, event_of
from server.core.loops import Loop
from server.core.messages import AdmittedNews, ChangedNews, ConfirmedNews, news_decoder
from server.waiting.admission import Admission
from server.waiting.fanout import Hub
from server.waiting.line import Admitted
from server.waiting.room import Room

log = logging.getLogger("boxoffice.news")


class News:
    def __init__(self, room: Room, hub: Hub, admission: Admission) -> None:
        self.room = room
        self.hub = hub
        self.admission = admission

    def loops(self) -> list[Loop]:
        return [("news", self.listen)]

    async def listen(self) -> float:
        pubsub = self.room.redis.pubsub()
        try:
            await pubsub.psubscribe(NEWS_PATTERN)
            await pubsub.subscribe(EVENTS_CHANNEL)
            async for message in pubsub.listen():
                if message["type"] not in ("message", "pmessage"):
                    continue
                await self.on_news(message["channel"], message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        return 0.5

    async def on_news(self, channel: bytes | str, data: bytes) -> None:
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            news = news_decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable news", extra={"channel": channel})
            return
        if isinstance(news, ChangedNews):
            self.room.cache.invalidate(news.event_id)
            ev = await self.room.cache.get(news.event_id)
            if ev is not None and (ev.closed or ev.sold_out):
                await self.hub.close_all(ev.id, "sold_out" if ev.sold_out else "ended")
            self.admission.refresh_soon()
        elif isinstance(news, ConfirmedNews):
            await self.hub.deliver_confirmed(news.queue_id, news.order_id)
        elif isinstance(news, AdmittedNews) and channel != EVENTS_CHANNEL:
            entries = [Admitted(*e) for e in news.entries]
            await self.hub.deliver_admitted(event_of(channel), entries)
