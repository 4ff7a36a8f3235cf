"""Commands packed by hiredis (server.store.redis_client.PackedConnection) are byte for byte what
redis-py's own asyncio packer makes of them, and what it refuses is refused."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Connection
from redis.exceptions import DataError

from server.store.redis_client import PackedConnection, PackedSSLConnection, PackedUnixConnection

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "bo:{ev:spring}:cfg"),
    ("EVALSHA", "a" * 40, 2, "bo:{ev:x}:seats", b"bo:{ev:x}:holds", "h1", "", 0, 600_000),
    ("SCRIPT LOAD", "return 1"),  # two words on the wire
    ("SCRIPT", "EXISTS", "a" * 40),
    ("HSET", "k", "prix", "é€😀"),  # UTF-8, as redis-py encodes
    ("ZADD", "k", 1.5, "m", -2, "n", 10**15, "o"),
    ("SET", "k", memoryview(b"bytes"), "PX", 100),
    ("SET", "k", bytearray(b"\x00\xff")),
    ("HSET", "k", "f", "x" * 20_000),  # longer than redis-py's buffer cutoff
]


PACKED = [PackedConnection, PackedSSLConnection, PackedUnixConnection]


@pytest.mark.parametrize("packed", PACKED)
@pytest.mark.parametrize("command", COMMANDS)
def test_packed_like_redis_py(packed: type[Any], command: tuple[Any, ...]) -> None:
    ours = b"".join(packed().pack_command(*command))
    theirs = b"".join(bytes(chunk) for chunk in Connection().pack_command(*command))
    assert ours == theirs


@pytest.mark.parametrize("value", [True, None, object(), ["list"]])
def test_refused_like_redis_py(value: Any) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", value)
