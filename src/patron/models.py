"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from patron.auth.models import (
    ApiToken,
    AuditEntry,
    LoginSession,
    RecordShare,
    Team,
    TeamMember,
    User,
)
from patron.collect.models import (
    Event,
    EventCatalogEntry,
    EventKey,
    Import,
    ImportRejection,
    ProcessingCursor,
    RejectedMessage,
    Source,
)
from patron.core.models import Base
from patron.crm.forms.models import Form, FormIpSalt, FormRateCounter, FormSubmission
from patron.crm.models import (
    Activity,
    Company,
    CustomField,
    Deal,
    DealStageVisit,
    PersonCompany,
    Pipeline,
    Stage,
)
from patron.crm.tickets.models import SlaPolicy, Ticket, TicketComment
from patron.crm.workflows.models import WorkflowRule, WorkflowRun
from patron.identity.models import (
    BlockedValue,
    Identity,
    IdentityConflict,
    IdentityRule,
    MatchCandidate,
    MatchRun,
    Merge,
    Person,
    PersonEvent,
    Separation,
)
from patron.profiles.models import ComputedState, ComputedTrait, TraitRule, TraitValue

metadata = Base.metadata

__all__ = [
    "Activity",
    "ApiToken",
    "AuditEntry",
    "BlockedValue",
    "Company",
    "ComputedState",
    "ComputedTrait",
    "CustomField",
    "Deal",
    "DealStageVisit",
    "Event",
    "EventCatalogEntry",
    "EventKey",
    "Form",
    "FormIpSalt",
    "FormRateCounter",
    "FormSubmission",
    "Identity",
    "IdentityConflict",
    "IdentityRule",
    "Import",
    "ImportRejection",
    "LoginSession",
    "MatchCandidate",
    "MatchRun",
    "Merge",
    "Person",
    "PersonCompany",
    "PersonEvent",
    "Pipeline",
    "ProcessingCursor",
    "RecordShare",
    "RejectedMessage",
    "Separation",
    "SlaPolicy",
    "Source",
    "Stage",
    "Team",
    "TeamMember",
    "Ticket",
    "TicketComment",
    "TraitRule",
    "TraitValue",
    "User",
    "WorkflowRule",
    "WorkflowRun",
    "metadata",
]
