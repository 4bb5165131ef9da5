"""Profile API: look persons up, their profile and timeline, survivorship, computed traits."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from patron.auth.deps import AdminActor, CurrentActor, require
from patron.auth.models import Role
from patron.auth.service import Actor
from patron.collect.models import Event
from patron.core.errors import InvalidInput
from patron.core.pagination import Page
from patron.core.web import DB, Cursor, Limit, RuntimeDep
from patron.crm.leads.scoring import score_summary
from patron.identity import service as identity
from patron.identity.schemas import IdentityOut, MergeOut
from patron.profiles import service
from patron.profiles.access import readable_persons, visible_person
from patron.profiles.models import ComputedTrait, TraitRule
from patron.profiles.schemas import (
    CompanyLinkOut,
    ComputedTraitIn,
    ComputedTraitOut,
    MergeRequest,
    PersonPage,
    PersonSummary,
    ProfileOut,
    TimelineEntry,
    TimelinePage,
    TraitRuleIn,
    TraitRuleOut,
)

router = APIRouter(prefix="/v1", tags=["profiles"])
Steward = Annotated[Actor, Depends(require(Role.manager))]
LOOKUPS = ("user_id", "email", "phone", "anonymous_id")


def _profile_out(
    db: DB, actor: Actor, person_id: uuid.UUID, *, lineage: bool = False
) -> ProfileOut:
    visible_person(db, actor, person_id)
    profile = service.get_profile(db, person_id, actor=actor, with_lineage=lineage)
    person = profile.person
    page = service.timeline(db, person.id, limit=20, cursor=None)
    return ProfileOut(
        id=person.id,
        traits=person.traits,
        computed_traits=person.computed,
        first_seen=person.first_seen,
        last_seen=person.last_seen,
        created_at=person.created_at,
        updated_at=person.updated_at,
        owner_id=person.owner_id,
        lifecycle_stage=person.lifecycle_stage,
        lead_status=person.lead_status,
        tags=person.tags,
        custom=person.custom,
        archived_at=person.archived_at,
        identities=[IdentityOut.model_validate(i) for i in profile.identities],
        companies=[
            CompanyLinkOut(
                id=c.id, group_id=c.group_id, name=c.name, role=link.role, traits=c.traits
            )
            for c, link in profile.companies
        ],
        merges=[MergeOut.model_validate(m) for m in profile.merges],
        merged_ids=profile.merged_ids,
        trait_lineage=profile.lineage,
        scores=score_summary(db, person.id),
        timeline=_timeline_out(page),
    )


def _timeline_out(page: Page[Event]) -> TimelinePage:
    return TimelinePage(
        items=[TimelineEntry.model_validate(e) for e in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/persons", response_model=ProfileOut | PersonPage)
def find_persons(
    db: DB,
    actor: CurrentActor,
    runtime: RuntimeDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    user_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    anonymous_id: str | None = None,
    kind: Annotated[str | None, Query(description="Any identifier kind, with `value`.")] = None,
    value: str | None = None,
) -> ProfileOut | PersonPage:
    """With an identifier (`?email=`, `?user_id=`, `?kind=&value=`...): that person's
    profile. Without: every person, newest first."""
    given = dict(zip(LOOKUPS, (user_id, email, phone, anonymous_id), strict=True))
    wanted = [(k, v) for k, v in given.items() if v is not None]
    if kind is not None or value is not None:
        if kind is None or value is None:
            raise InvalidInput("look up by `kind` and `value` together", field="kind")
        wanted.append((kind, value))
    if len(wanted) > 1:
        raise InvalidInput("look a person up by one identifier at a time", field=wanted[1][0])
    if wanted:
        found = identity.find_by_identifier(
            db, kind=wanted[0][0], value=wanted[0][1], settings=runtime.settings
        )
        return _profile_out(db, actor, found.id)
    page = identity.list_persons(db, limit=limit, cursor=cursor, where=readable_persons(actor))
    return PersonPage(
        items=[PersonSummary.model_validate(p) for p in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/persons/{person_id}", response_model=ProfileOut)
def get_person(
    person_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    lineage: Annotated[bool, Query(description="Include every trait value and source.")] = False,
) -> ProfileOut:
    """A person's profile; the id of a merged person answers with the survivor."""
    return _profile_out(db, actor, person_id, lineage=lineage)


@router.get("/persons/{person_id}/timeline", response_model=TimelinePage)
def person_timeline(
    person_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    limit: Limit = 50,
    cursor: Cursor = None,
    type: Annotated[str | None, Query(description="identify, track, page, ...")] = None,
) -> TimelinePage:
    """A person's events, newest first."""
    visible_person(db, actor, person_id)
    return _timeline_out(service.timeline(db, person_id, limit=limit, cursor=cursor, type=type))


@router.post("/persons/{person_id}/merge", response_model=MergeOut)
def merge_person(
    person_id: uuid.UUID, body: MergeRequest, db: DB, actor: Steward, runtime: RuntimeDep
) -> MergeOut:
    """Merge another person into this one (the older of the two survives)."""
    visible_person(db, actor, person_id)
    visible_person(db, actor, body.other_id)
    merge = identity.merge_persons(
        db, first=person_id, second=body.other_id, settings=runtime.settings, actor=actor
    )
    db.commit()
    return MergeOut.model_validate(merge)


@router.get("/traits/rules", response_model=list[TraitRuleOut])
def list_trait_rules(db: DB, _actor: CurrentActor) -> list[TraitRule]:
    """Survivorship rules; a trait without one shows its most recent value."""
    return service.list_trait_rules(db)


@router.put("/traits/rules/{name}", response_model=TraitRuleOut)
def set_trait_rule(name: str, body: TraitRuleIn, db: DB, actor: AdminActor) -> TraitRule:
    """Choose how a trait's visible value is picked."""
    rule = service.set_trait_rule(
        db, name=name, rule=body.rule, source_priority=body.source_priority, actor=actor
    )
    db.commit()
    return rule


@router.get("/computed-traits", response_model=list[ComputedTraitOut])
def list_computed(db: DB, _actor: CurrentActor) -> list[ComputedTrait]:
    """Computed trait definitions, the built-in ones included."""
    return service.list_computed(db)


@router.post(
    "/computed-traits", response_model=ComputedTraitOut, status_code=status.HTTP_201_CREATED
)
def create_computed(body: ComputedTraitIn, db: DB, actor: AdminActor) -> ComputedTrait:
    """Define a computed trait; it is computed for everyone at once, then kept up to date."""
    trait = service.create_computed(
        db,
        name=body.name,
        function=body.function,
        event=body.event,
        property=body.property,
        window_days=body.window_days,
        actor=actor,
    )
    db.commit()
    return trait


@router.delete("/computed-traits/{trait_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_computed(trait_id: int, db: DB, actor: AdminActor) -> None:
    """Remove a computed trait and its values."""
    service.delete_computed(db, trait_id=trait_id, actor=actor)
    db.commit()
