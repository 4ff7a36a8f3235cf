"""News between processes over Redis pub/sub: admissions for the sockets each process holds,
settings changes (re-read the event, close sockets of an ended sale), confirmed orders.

Settings changes travel on the one classic channel `bo:events` (on a cluster, a classic PUBLISH
reaches every node). An event's admissions and confirmations travel on its own channel
(EventKeys.channel): on one Redis, one pattern subscription covers every event; on a cluster
they are sharded channels (SPUBLISH, in the event's slot, served by the shard that owns it),
which cannot be pattern-subscribed, so each process subscribes to the channels of the live
events and of the events it holds sockets of, as those change."""

from __future__ import annotations

import logging

import msgspec
from redis.asyncio.cluster import RedisCluster

from server.core.keys import EVENTS_CHANNEL, NEWS_PATTERN, EventKeys, event_of
from server.core.loops import Loop
from server.core.messages import AdmittedNews, ChangedNews, ConfirmedNews, news_decoder
from server.store.redis_client import sharded
from server.waiting.admission import Admission
from server.waiting.fanout import Hub
from server.waiting.line import Admitted
from server.waiting.room import Room

log = logging.getLogger("boxoffice.news")

POLL_S = 0.05  # on a cluster: the longest a sharded message waits to be read


class News:
    def __init__(self, room: Room, hub: Hub, admission: Admission) -> None:
        self.room = room
        self.hub = hub
        self.admission = admission

    def loops(self) -> list[Loop]:
        return [("news", self.listen)]

    async def listen(self) -> float:
        if sharded(self.room.redis):
            return await self.listen_sharded(self.room.redis)
        pubsub = self.room.redis.pubsub()
        try:
            await pubsub.psubscribe(NEWS_PATTERN)
            await pubsub.subscribe(EVENTS_CHANNEL)
            async for message in pubsub.listen():
                if message["type"] not in ("message", "pmessage"):
                    continue
                await self.on_news(message["channel"], message["data"])
        finally:
            await pubsub.aclose()
        return 0.5

    def wanted_events(self) -> set[str]:
        return {ev.id for ev in self.admission.live} | self.hub.event_ids()

    async def listen_sharded(self, cluster: RedisCluster) -> float:
        """On a cluster: `bo:events` on the classic connection; each wanted event's sharded
        channel on the connection to the shard that owns it (redis-py's ClusterPubSub moves a
        subscription to the new owner after a failover). A failure ends the step and the loop
        starts over with fresh subscriptions."""
        pubsub = cluster.pubsub()
        subscribed: set[str] = set()
        try:
            await pubsub.subscribe(EVENTS_CHANNEL)
            while True:
                wanted = self.wanted_events()
                new, gone = wanted - subscribed, subscribed - wanted
                if new:
                    await pubsub.ssubscribe(*(EventKeys(e).channel for e in sorted(new)))
                    for event_id in new:  # an admission may have come before the subscription
                        self.hub.recheck_soon(event_id)
                if gone:
                    await pubsub.sunsubscribe(*(EventKeys(e).channel for e in sorted(gone)))
                subscribed = wanted
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_S)
                if message is not None and message["type"] == "message":
                    await self.on_news(message["channel"], message["data"])
                while subscribed:
                    message = await pubsub.get_sharded_message(
                        ignore_subscribe_messages=True, timeout=0.0
                    )
                    if message is None:
                        break
                    if message["type"] == "smessage":
                        await self.on_news(message["channel"], message["data"])
        finally:
            await pubsub.aclose()
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
