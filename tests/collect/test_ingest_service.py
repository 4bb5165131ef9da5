"""The ingest service refuses, message by message, what no path may store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from patron.collect import service
from patron.collect.messages import RequestMeta
from patron.collect.models import Source
from patron.core.clock import utcnow


def test_unstorable_nesting_is_rejected_alone(db: Session, source: tuple[Source, str]) -> None:
    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    result = service.ingest(
        db,
        source=db.get(Source, source[0].id),  # type: ignore[arg-type]
        envelope=service.Envelope(
            messages=[
                {"type": "track", "userId": "u", "event": "Deep", "properties": {"x": deep}},
                {"type": "track", "userId": "u", "event": "Fine"},
            ]
        ),
        meta=RequestMeta(received_at=utcnow()),
        max_future_skew=timedelta(hours=1),
    )
    assert result.accepted == 1
    assert [(r.index, r.code) for r in result.rejected] == [(0, "too_deep")]
