"""Rate limits for form posts, counted in the database so every server process agrees,
and the daily-salted hash that stands in for a client's IP address.

Counts are kept per minute; the rate over the last sixty seconds is estimated from this
minute's count and the previous one's, weighted by how much of it still lies within the
window (the sliding-window counter most rate limiters use). That costs two small reads and
one upsert per post, however high the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import threading
from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from patron.core.dialect import dialect_insert
from patron.crm.forms.models import FormIpSalt, FormRateCounter

WINDOW_SECONDS = 60
# How many days of IP salts exist at once: today's, and yesterday's for posts around midnight.
SALT_DAYS = 2


def _shard() -> str:
    """This writer's own counter rows: no two transactions ever update the same one."""
    return f"{os.getpid()}-{threading.get_ident()}"[:60]


def check_rate(
    session: Session, *, key: str, limit: int, now: datetime, count_refused: bool
) -> int | None:
    """Count one post for ``key``; None when it is within ``limit`` a minute, else how many
    seconds until one more would be (for Retry-After).

    ``count_refused``: a refused post counts too (for a client IP: who keeps flooding stays
    refused); otherwise only allowed ones count (for a form: a surge from many visitors
    still lets ``limit`` a minute through).
    """
    window, elapsed = divmod(now.timestamp(), WINDOW_SECONDS)
    previous, current = _counts(session, key, int(window))
    estimate = previous * (1 - elapsed / WINDOW_SECONDS) + current
    allowed = estimate + 1 <= limit
    if allowed or count_refused:
        _count(session, key, int(window))
    if allowed:
        return None
    current += 1 if count_refused else 0
    return _seconds_until_room(previous, current, limit, elapsed)


def _counts(session: Session, key: str, window: int) -> tuple[int, int]:
    rows = session.execute(
        select(FormRateCounter.window, func.sum(FormRateCounter.count))
        .where(FormRateCounter.key == key, FormRateCounter.window.in_((window - 1, window)))
        .group_by(FormRateCounter.window)
    )
    counts = {int(w): int(n or 0) for w, n in rows}
    return counts.get(window - 1, 0), counts.get(window, 0)


def _count(session: Session, key: str, window: int) -> None:
    table = FormRateCounter.__table__
    statement = (
        dialect_insert(session, table)
        .values(key=key, window=window, shard=_shard(), count=1)
        .on_conflict_do_update(
            index_elements=["key", "window", "shard"], set_={"count": table.c.count + 1}
        )
    )
    session.execute(statement)


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
    day, and untraceable once the salt is deleted."""
    return hmac.new(_salt(session, day), ip.encode(), hashlib.sha256).hexdigest()


def _salt(session: Session, day: date) -> bytes:
    # Read every time (a primary-key lookup): a salt cached in memory could outlive its row.
    stored = session.scalar(select(FormIpSalt.salt).where(FormIpSalt.day == day))
    if stored is None:
        # Another process may make the day's salt at the same moment: the first one stays.
        session.execute(
            dialect_insert(session, FormIpSalt.__table__)
            .values(day=day, salt=secrets.token_hex(32))
            .on_conflict_do_nothing(index_elements=["day"])
        )
        stored = session.scalar(select(FormIpSalt.salt).where(FormIpSalt.day == day))
    return bytes.fromhex(str(stored))


def prune(session: Session, now: datetime) -> int:
    """Forget counts no window needs any more and salts older than ``SALT_DAYS``."""
    window = int(now.timestamp() // WINDOW_SECONDS)
    counters = session.execute(delete(FormRateCounter).where(FormRateCounter.window < window - 1))
    oldest = now.date() - timedelta(days=SALT_DAYS - 1)
    salts = session.execute(delete(FormIpSalt).where(FormIpSalt.day < oldest))
    return int(getattr(counters, "rowcount", 0) or 0) + int(getattr(salts, "rowcount", 0) or 0)
