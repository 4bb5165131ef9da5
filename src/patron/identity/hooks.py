"""Where the domains above identity plug into merges, splits and replays.

Identity sits below profiles and the CRM, so it cannot call them; they register here
instead (``patron.pipeline`` does it, at the top of the import graph). Declared in one
place so that what a merge touches is visible at a glance.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from patron.collect.models import LogEntry
from patron.core.settings import Settings

# (session, survivor id, merged id): move what the merged person owns to the survivor.
MergeHook = Callable[[Session, uuid.UUID, uuid.UUID], None]
# (session, [(survivor id, merged id), ...] in the order the merges were made): the same
# for a group of merges at once, for domains whose data is cheaper to move in one pass.
ManyMergeHook = Callable[[Session, Sequence[tuple[uuid.UUID, uuid.UUID]]], None]
# (session, survivor ids): after a group of merges, refresh what survivors show, once each.
MergedHook = Callable[[Session, set[uuid.UUID]], None]
# (session, person ids): forget everything derived for these persons before a replay.
ResetHook = Callable[[Session, Sequence[uuid.UUID]], None]
# (session, events in log order): derive everything again for these events.
ReplayHook = Callable[[Session, Sequence[LogEntry], Settings], None]


@dataclass
class Hooks:
    merged: list[MergeHook] = field(default_factory=list)
    merged_many: list[ManyMergeHook] = field(default_factory=list)
    after_merges: list[MergedHook] = field(default_factory=list)
    reset: list[ResetHook] = field(default_factory=list)
    replay: ReplayHook | None = None

    def on_merges(
        self,
        session: Session,
        pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
        *,
        settle: bool = True,
    ) -> None:
        """Move what the merged persons own to their survivors, then refresh the survivors
        (unless ``settle`` is False: the caller refreshes them itself, with more)."""
        for many in self.merged_many:
            many(session, pairs)
        for survivor, merged in pairs:
            for hook in self.merged:
                hook(session, survivor, merged)
        if settle:
            self.settle(session, {survivor for survivor, _ in pairs})

    def settle(self, session: Session, survivors: set[uuid.UUID]) -> None:
        for after in self.after_merges:
            after(session, survivors)

    def on_reset(self, session: Session, persons: Sequence[uuid.UUID]) -> None:
        for hook in self.reset:
            hook(session, persons)


HOOKS = Hooks()
