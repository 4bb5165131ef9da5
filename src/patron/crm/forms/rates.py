"""Rate limits for form posts, counted in the database so every server process agrees,
and the daily-salted hash that stands in for a client's IP address.

Counts are kept per minute; the rate over the last sixty seconds is estimated from this
minute's count and the previous one's, weighted by how much of it still lies within the
window (the sliding-window counter most rate limiters use). That costs one small read and
one upsert per post for all limits together, however high they are.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from patron.core.dialect import dialect_insert
from patron.crm.forms.models import FormIpSalt, FormRateCounter

WINDOW_SECONDS = 60
# How many days of IP salts exist at once: today's, and yesterday's for posts around midnight.
SALT_DAYS = 2


def _shard() -> str:
    """This writer's own counter rows: no two transactions ever update the same one."""
    return f"{os.getpid()}-{threading.get_ident()}"[:60]


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` posts a minute for ``key``. ``count_refused``: a refused post counts
    too (for a client IP: who keeps flooding stays refused); otherwise only allowed ones do
    (for a form: a surge from many visitors still lets ``limit`` a minute through)."""

    key: str
    limit: int
    count_refused: bool


def check_rates(session: Session, limits: Sequence[Limit], now: datetime) -> int | None:
    """Count one post against each limit in turn; None when all allow it, else how many
    seconds until the first that refused would allow one more (for Retry-After). The limits
    after a refusal are neither checked nor counted."""
    if not limits:
        return None
    window, elapsed = divmod(now.timestamp(), WINDOW_SECONDS)
    counts = _counts(session, [limit.key for limit in limits], int(window))
    counted: list[str] = []
    wait = None
    for limit in limits:
        previous, current = (
            counts.get((limit.key, int(window) - 1), 0),
            counts.get((limit.key, int(window)), 0),
        )
        allowed = previous * (1 - elapsed / WINDOW_SECONDS) + current + 1 <= limit.limit
        if allowed or limit.count_refused:
            counted.append(limit.key)
        if not allowed:
            current += 1 if limit.count_refused else 0
            wait = _seconds_until_room(previous, current, limit.limit, elapsed)
            break
    _count(session, counted, int(window))
    return wait


def _counts(session: Session, keys: list[str], window: int) -> dict[tuple[str, int], int]:
    rows = session.execute(COUNTS, {"keys": keys, "windows": [window - 1, window]})
    return {(str(key), int(w)): int(n or 0) for key, w, n in rows}


COUNTS = (
    select(FormRateCounter.key, FormRateCounter.window, func.sum(FormRateCounter.count))
    .where(
        FormRateCounter.key.in_(bindparam("keys", expanding=True)),
        FormRateCounter.window.in_(bindparam("windows", expanding=True)),
    )
    .group_by(FormRateCounter.key, FormRateCounter.window)
)


def _count(session: Session, keys: list[str], window: int) -> None:
    if not keys:
        return
    table = FormRateCounter.__table__
    statement = dialect_insert(session, table).on_conflict_do_update(
        index_elements=["key", "window", "shard"], set_={"count": table.c.count + 1}
    )
    shard = _shard()
    session.execute(
        statement, [{"key": k, "window": window, "shard": shard, "count": 1} for k in keys]
    )


def _seconds_until_room(previous: int, current: int, limit: int, elapsed: float) -> int:
    """When, if nothing more is posted, the estimate leaves room for one more post."""
    room = limit - 1
    if current <= room:
        # The previous minute's share has to shrink enough, within this minute.
        share = 0.0 if previous <= 0 else 1 - (room - current) / previous
        wait = WINDOW_SECONDS * share - elapsed
    else:
        # This minute's count, once it is the previous one, has to shrink enough.
        wait = (WINDOW_SECONDS - elapsed) + WINDOW_SECONDS * (1 - room / current)
    return max(1, math.ceil(wait))


def hash_ip(session: Session, ip: str, day: date) -> str:
    """HMAC-SHA256 of the address under the day's salt: equal for one client within a
    day, and untraceable once the salt is deleted. Makes the day's salt if need be."""
    salt = known_salt(session, day)
    if salt is None:
        make_salt(session, day)
        salt = bytes.fromhex(str(session.scalar(SALT, {"day": day})))
    return keyed_hash(salt, ip)


def keyed_hash(salt: bytes, ip: str) -> str:
    return hmac.new(salt, ip.encode(), hashlib.sha256).hexdigest()


def known_salt(session: Session, day: date) -> bytes | None:
    """The day's salt if it exists. Remembered once read: a salt is never changed, and is
    deleted only once its day is over (:func:`prune`)."""
    cache_key = (str(session.get_bind().engine.url), day)
    if cache_key in _salts:
        return _salts[cache_key]
    stored = session.scalar(SALT, {"day": day})
    if stored is None:
        return None
    _salts[cache_key] = bytes.fromhex(stored)
    return _salts[cache_key]


def make_salt(session: Session, day: date) -> None:
    """Make the day's salt, unless another process just did (the first one stays)."""
    session.execute(
        dialect_insert(session, FormIpSalt.__table__)
        .values(day=day, salt=secrets.token_hex(32))
        .on_conflict_do_nothing(index_elements=["day"])
    )


SALT = select(FormIpSalt.salt).where(FormIpSalt.day == bindparam("day"))
# (database URL, day) -> salt, for the salts this process has read.
_salts: dict[tuple[str, date], bytes] = {}


def prune(session: Session, now: datetime) -> int:
    """Forget counts no window needs any more and salts older than ``SALT_DAYS``."""
    window = int(now.timestamp() // WINDOW_SECONDS)
    counters = session.execute(delete(FormRateCounter).where(FormRateCounter.window < window - 1))
    oldest = now.date() - timedelta(days=SALT_DAYS - 1)
    salts = session.execute(delete(FormIpSalt).where(FormIpSalt.day < oldest))
    for key in [k for k in _salts if k[1] < oldest]:
        del _salts[key]
    return int(getattr(counters, "rowcount", 0) or 0) + int(getattr(salts, "rowcount", 0) or 0)
