"""Identity API: merges and unmerges, identifier rules, blocked values, conflicts, matching."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from patron.auth.deps import AdminActor, CurrentActor, require
from patron.auth.models import Role
from patron.auth.service import Actor
from patron.core.web import DB, Cursor, Limit, RuntimeDep
from patron.identity import linkage, service
from patron.identity.models import BlockedValue, MatchCandidate, Merge
from patron.identity.schemas import (
    BlockedIn,
    BlockedOut,
    ConflictOut,
    ConflictPage,
    MatchCandidateOut,
    MatchCandidatePage,
    MatchDecisionOut,
    MatchRunIn,
    MatchRunOut,
    MatchRunResult,
    MergeOut,
    RuleIn,
    RuleOut,
    UnmergeRequest,
)

router = APIRouter(prefix="/v1", tags=["identity"])
Steward = Annotated[Actor, Depends(require(Role.manager))]


@router.get("/merges/{merge_id}", response_model=MergeOut)
def get_merge(merge_id: int, db: DB, _actor: CurrentActor) -> Merge:
    """One merge with its evidence."""
    return service.get_merge(db, merge_id)


@router.post("/merges/{merge_id}/undo", response_model=MergeOut)
def undo_merge(
    merge_id: int, body: UnmergeRequest, db: DB, actor: Steward, runtime: RuntimeDep
) -> Merge:
    """Split a merge: both persons come back as if it had never happened."""
    merge = service.unmerge(
        db, merge_id=merge_id, settings=runtime.settings, actor=actor, block=body.block
    )
    db.commit()
    return merge


@router.get("/identity/rules", response_model=list[RuleOut])
def list_rules(db: DB, _actor: CurrentActor) -> list[service.RuleView]:
    """Every identifier kind with its limit per person and its priority."""
    return service.list_rules(db)


@router.put("/identity/rules/{kind}", response_model=RuleOut)
def set_rule(kind: str, body: RuleIn, db: DB, actor: AdminActor) -> service.RuleView:
    """Declare a kind of identifier, or change a kind's limit, priority or trait."""
    view = service.set_rule(
        db,
        kind=kind,
        max_per_person=body.max_per_person,
        priority=body.priority,
        trait=body.trait,
        actor=actor,
    )
    db.commit()
    return view


@router.get("/identity/blocked", response_model=list[BlockedOut])
def list_blocked(
    db: DB,
    _actor: CurrentActor,
    status: Annotated[str | None, Query(description="active, or review (super-nodes)")] = None,
) -> list[BlockedValue]:
    """Values that never link persons; `status=review` lists the super-nodes held for review."""
    return service.list_blocked(db, status=status)


@router.post("/identity/blocked", response_model=BlockedOut, status_code=status.HTTP_201_CREATED)
def block_value(body: BlockedIn, db: DB, actor: AdminActor, runtime: RuntimeDep) -> BlockedValue:
    """Block a value or a regular expression; persons it joined are split again."""
    row = service.block_value(
        db,
        pattern=body.pattern,
        kind=body.kind,
        is_regex=body.is_regex,
        reason=body.reason,
        settings=runtime.settings,
        actor=actor,
    )
    db.commit()
    return row


@router.post("/identity/blocked/{blocked_id}/confirm", response_model=BlockedOut)
def confirm_blocked(blocked_id: int, db: DB, actor: AdminActor) -> BlockedValue:
    """Keep a super-node blocked (it leaves the review list)."""
    row = service.confirm_blocked(db, blocked_id=blocked_id, actor=actor)
    db.commit()
    return row


@router.delete("/identity/blocked/{blocked_id}", status_code=status.HTTP_204_NO_CONTENT)
def release_blocked(blocked_id: int, db: DB, actor: AdminActor) -> None:
    """Unblock a value; it links again for messages processed from now on."""
    service.release_blocked(db, blocked_id=blocked_id, actor=actor)
    db.commit()


@router.get("/identity/conflicts", response_model=ConflictPage)
def list_conflicts(
    db: DB,
    _actor: CurrentActor,
    limit: Limit = 50,
    cursor: Cursor = None,
    person_id: uuid.UUID | None = None,
) -> ConflictPage:
    """Identifiers that messages carried but that were not used to link, and why."""
    page = service.list_conflicts(db, person_id=person_id, limit=limit, cursor=cursor)
    return ConflictPage(
        items=[ConflictOut.model_validate(c) for c in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.post("/identity/match", response_model=MatchRunResult)
def run_matching(body: MatchRunIn, db: DB, actor: Steward, runtime: RuntimeDep) -> MatchRunResult:
    """Run record linkage now: merge near-certain duplicates, queue likely ones for review."""
    # Scoring runs in its own read transaction and only the decisions write: end the
    # request's transaction (authentication opened it) so it holds no lock meanwhile.
    db.rollback()
    summary = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=runtime.settings, actor=actor, full=body.full
    )
    return MatchRunResult(
        **MatchRunOut.model_validate(summary.run).model_dump(), merge_ids=summary.merges
    )


@router.get("/identity/match/candidates", response_model=MatchCandidatePage)
def list_match_candidates(
    db: DB,
    _actor: Steward,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[
        str | None, Query(description="pending, merged, accepted or rejected; default: all")
    ] = None,
) -> MatchCandidatePage:
    """Pairs of persons the matcher found alike, with the evidence of each field (for
    managers and admins: the evidence shows personal data from across the base)."""
    page = linkage.list_candidates(db, status=status, limit=limit, cursor=cursor)
    return MatchCandidatePage(
        items=[MatchCandidateOut.model_validate(c) for c in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/identity/match/candidates/{candidate_id}", response_model=MatchCandidateOut)
def get_match_candidate(candidate_id: int, db: DB, _actor: Steward) -> MatchCandidate:
    """One pair with its evidence."""
    return linkage.get_candidate(db, candidate_id)


@router.post("/identity/match/candidates/{candidate_id}/accept", response_model=MatchDecisionOut)
def accept_match_candidate(
    candidate_id: int, db: DB, actor: Steward, runtime: RuntimeDep
) -> MatchDecisionOut:
    """They are one person: merge them (undoable like any merge)."""
    candidate, merge = linkage.accept_candidate(
        db, candidate_id=candidate_id, settings=runtime.settings, actor=actor
    )
    db.commit()
    return MatchDecisionOut(
        candidate=MatchCandidateOut.model_validate(candidate), merge=MergeOut.model_validate(merge)
    )


@router.post("/identity/match/candidates/{candidate_id}/reject", response_model=MatchDecisionOut)
def reject_match_candidate(candidate_id: int, db: DB, actor: Steward) -> MatchDecisionOut:
    """They are different people: the pair is never proposed again."""
    candidate = linkage.reject_candidate(db, candidate_id=candidate_id, actor=actor)
    db.commit()
    return MatchDecisionOut(candidate=MatchCandidateOut.model_validate(candidate), merge=None)
