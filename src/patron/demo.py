"""A synthetic online shop, loaded through the real ingestion path.

Deterministic for a seed: people browse anonymously on one or two devices, view and cart
products, sign up, identify (sometimes under a second email), order, and a few belong to
companies. Every message goes through :func:`patron.collect.service.ingest`, exactly like
one posted to ``/v1/batch``, and the processor then drains the log.
"""

from __future__ import annotations

import math
import random
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth_service
from patron.auth.models import Role, Team, User
from patron.collect import service as collect_service
from patron.collect.messages import RequestMeta
from patron.collect.models import Source
from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from patron.crm import activities, contacts, deals
from patron.crm.forms import service as forms
from patron.crm.forms.models import Form
from patron.crm.forms.submissions import SubmissionMeta, submit
from patron.crm.leads import assignment as lead_assignment
from patron.crm.leads import jobs as lead_jobs
from patron.crm.leads import scoring as lead_scoring
from patron.crm.leads.conditions import load_facts, lookup
from patron.crm.models import Deal, PersonCompany, Pipeline
from patron.crm.pipelines import StageSpec, create_pipeline, stages_of
from patron.crm.tickets import clock as ticket_clock
from patron.crm.tickets import policies as ticket_policies
from patron.crm.tickets import service as tickets
from patron.crm.tickets.jobs import check_sla
from patron.crm.workflows import service as workflows
from patron.crm.workflows.jobs import run_until_idle
from patron.crm.workflows.schemas import RuleIn
from patron.identity import linkage
from patron.identity.models import Identity, Person
from patron.pipeline import Processor

ADMIN_EMAIL = "admin@example.com"
CHUNK = 500
FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "Dev",
    "Eva",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kai",
    "Lena",
    "Marco",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Almeida",
    "Becker",
    "Chen",
    "Dubois",
    "Evans",
    "Fischer",
    "García",
    "Hansen",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "López",
    "Müller",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Rossi",
    "Silva",
    "Tanaka",
    "Usman",
    "Varga",
    "Weber",
    "Yilmaz",
    "Zhang",
]
DOMAINS = ["example.com", "mail.example", "inbox.example", "post.example"]
COMPANIES = [
    ("Acme Corp", "acme.example", "Manufacturing"),
    ("Globex", "globex.example", "Energy"),
    ("Initech", "initech.example", "Software"),
    ("Umbrella", "umbrella.example", "Health"),
    ("Hooli", "hooli.example", "Software"),
    ("Stark Industries", "stark.example", "Defense"),
]
PRODUCTS = [
    ("sku-1001", "Trail Running Shoes", "Shoes", 119.0),
    ("sku-1002", "Merino Base Layer", "Apparel", 79.0),
    ("sku-1003", "Rain Shell Jacket", "Apparel", 189.0),
    ("sku-1004", "Headlamp 400", "Gear", 45.0),
    ("sku-1005", "Hydration Vest", "Gear", 99.0),
    ("sku-1006", "Wool Socks (3 pack)", "Apparel", 24.0),
    ("sku-1007", "Trekking Poles", "Gear", 139.0),
    ("sku-1008", "Camp Stove", "Gear", 69.0),
]
PAGES = [
    ("/", "Home"),
    ("/shoes", "Shoes"),
    ("/apparel", "Apparel"),
    ("/gear", "Gear"),
    ("/about", "About"),
    ("/blog/trail-tips", "Trail tips"),
]
CITIES = [("Lisbon", "PT"), ("Berlin", "DE"), ("Lyon", "FR"), ("Austin", "US"), ("Osaka", "JP")]
AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
]


@dataclass
class DemoResult:
    people: int = 0
    messages: int = 0
    accepted: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


@dataclass
class Credentials:
    url: str
    admin_email: str
    admin_password: str
    write_key: str
    server_write_key: str

    def as_dict(self) -> dict[str, str]:
        return {
            "url": self.url,
            "admin_email": self.admin_email,
            "admin_password": self.admin_password,
            "write_key": self.write_key,
            "server_write_key": self.server_write_key,
        }


def credentials_path(data_dir: Path) -> Path:
    return data_dir / "demo-credentials.json"


def load_or_create(
    runtime: Runtime, *, people: int, seed: int, url: str
) -> tuple[Credentials, DemoResult | None]:
    """Load the demo once; later calls return the saved credentials and load nothing."""
    path = credentials_path(runtime.settings.data_dir)
    if path.exists():
        saved = orjson.loads(path.read_bytes())
        saved["url"] = url
        return Credentials(**saved), None
    with runtime.sessions() as db:
        website, web_key = _source(db, "Website", "browser")
        backend, server_key = _source(db, "Shop backend", "server")
        password = secrets.token_urlsafe(12)
        admin = db.scalar(select(User).where(User.email == ADMIN_EMAIL))
        if admin is None:
            auth_service.create_user(
                db, email=ADMIN_EMAIL, role="admin", password=password, name="Demo admin"
            )
        else:
            admin.password_hash = auth_service.hash_password(password)
        db.commit()
    result = load_shop(
        runtime, people=people, seed=seed, sources={"web": website.id, "server": backend.id}
    )
    load_sales_team(runtime, seed=seed, password=password)
    load_support_desk(runtime, seed=seed)
    load_forms(runtime, seed=seed, submissions=min(300, max(40, people // 10)))
    load_leads(runtime, seed=seed, password=password)
    # Later steps closed deals and moved leads: do the workflow runs they fired, and
    # process the events of it all, so the demo starts settled.
    run_until_idle(runtime.sessions, runtime.settings)
    Processor(runtime.sessions, settings=runtime.settings).drain()
    credentials = Credentials(url, ADMIN_EMAIL, password, web_key, server_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = credentials.as_dict()
    saved.pop("url")
    path.write_bytes(orjson.dumps(saved, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return credentials, result


def _source(db: Session, name: str, kind: str) -> tuple[Source, str]:
    """The named source with a fresh key (a load interrupted before may have made it)."""
    existing = db.scalar(select(Source).where(Source.name == name))
    if existing is None:
        return collect_service.create_source(db, name=name, kind=kind)
    return existing, collect_service.rotate_write_key(db, existing, actor=None)


def load_shop(
    runtime: Runtime,
    *,
    people: int,
    seed: int,
    sources: dict[str, Any],
    process: bool = True,
) -> DemoResult:
    """Generate the shop's messages and push them through ingestion, then process the log."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    now = utcnow()
    result = DemoResult(people=people)
    chunks: dict[str, list[dict[str, Any]]] = {"web": [], "server": []}
    skew = timedelta(seconds=runtime.settings.max_future_skew_seconds)

    def flush(kind: str) -> None:
        batch = chunks[kind]
        if not batch:
            return
        with runtime.sessions() as db:
            source = collect_service.get_source(db, sources[kind])
            outcome = collect_service.ingest(
                db,
                source=source,
                envelope=collect_service.Envelope(messages=batch),
                meta=RequestMeta(received_at=now, ip="203.0.113.7", user_agent="patron-demo"),
                max_future_skew=skew,
            )
            db.commit()
        result.accepted += outcome.accepted
        chunks[kind] = []

    for index in range(people):
        for kind, message in _person_story(rng, index, now):
            chunks[kind].append(message)
            result.messages += 1
            result.by_type[message["type"]] = result.by_type.get(message["type"], 0) + 1
            if len(chunks[kind]) >= CHUNK:
                flush(kind)
    flush("web")
    flush("server")
    if not process:
        return result
    Processor(
        runtime.sessions, batch_size=runtime.settings.process_batch_size, settings=runtime.settings
    ).drain()
    # The loyalty-card duplicates share no identifier: record linkage merges the sure ones
    # and queues the rest for review, as the idle processor would within the hour.
    linkage.run_matching(
        runtime.readers, runtime.sessions, settings=runtime.settings, actor=None, full=True
    )
    return result


def _person_story(
    rng: random.Random, index: int, now: datetime
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One customer's life in the shop, oldest first."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{_ascii(first)}.{_ascii(last)}{index}@{rng.choice(DOMAINS)}".lower()
    user_id = f"cust-{index:06d}"
    devices = [f"anon-{index:06d}-{d}" for d in range(rng.choice((1, 1, 2)))]
    agents = {device: rng.choice(AGENTS) for device in devices}
    city, country = rng.choice(CITIES)
    start = now - timedelta(days=rng.uniform(1, 90))
    clock = [start]

    def at() -> str:
        clock[0] += timedelta(minutes=rng.uniform(0.2, 30))
        return min(clock[0], now).isoformat()

    def web(kind: str, device: str, identified: bool, **fields: Any) -> tuple[str, dict[str, Any]]:
        message: dict[str, Any] = {
            "type": kind,
            "anonymousId": device,
            "timestamp": at(),
            "context": {
                "userAgent": agents[device],
                "locale": "en-US",
                "library": {"name": "patron.js", "version": "1.0.0"},
            },
            **fields,
        }
        if identified:
            message["userId"] = user_id
        return "web", message

    # Each device starts anonymous; the person signs up on one and signs in on the others,
    # which is what ties the anonymous histories of both devices to one customer.
    identified = False
    signup: dict[str, Any] | None = None
    for device in devices:
        signed_in = False
        for _ in range(rng.randint(1, 5)):
            path, name = rng.choice(PAGES)
            yield web(
                "page", device, signed_in, name=name, properties={"path": path, "title": name}
            )
        viewed = rng.sample(PRODUCTS, rng.randint(1, 3))
        for sku, product, category, price in viewed:
            yield web(
                "track",
                device,
                signed_in,
                event="Product Viewed",
                properties={
                    "product_id": sku,
                    "name": product,
                    "category": category,
                    "price": price,
                },
            )
        if rng.random() < 0.45:
            sku, product, category, price = viewed[0]
            yield web(
                "track",
                device,
                signed_in,
                event="Product Added",
                properties={"product_id": sku, "name": product, "price": price, "quantity": 1},
            )
            yield web(
                "track", device, signed_in, event="Cart Viewed", properties={"products": [sku]}
            )
        if identified and rng.random() < 0.85:
            signed_in = True
            yield web("identify", device, True, traits={"email": email})
            yield web("track", device, True, event="Signed In", properties={"method": "email"})
        elif not identified and rng.random() < 0.6:
            identified = signed_in = True
            traits = {
                "email": email,
                "firstName": first,
                "lastName": last,
                "address": {"city": city, "country": country},
            }
            if rng.random() < 0.6:  # the sign-up form asks for a birthday, for a coupon
                traits["birthday"] = _birthday(rng)
            signup = traits
            yield web("identify", device, True, traits=traits)
            yield web("track", device, True, event="Signed Up", properties={"method": "email"})
    if identified and rng.random() < 0.55:
        for _ in range(rng.randint(1, 3)):
            items = rng.sample(PRODUCTS, rng.randint(1, 3))
            revenue = round(sum(p[3] for p in items), 2)
            yield web(
                "track", devices[-1], True, event="Checkout Started", properties={"value": revenue}
            )
            order_email = (
                email if rng.random() < 0.85 else f"{_ascii(first)}.{index}@work.example".lower()
            )
            yield (
                "server",
                {
                    "type": "track",
                    "userId": user_id,
                    "event": "Order Completed",
                    "timestamp": at(),
                    "properties": {
                        "order_id": f"ord-{index:06d}-{rng.randint(1000, 9999)}",
                        "revenue": revenue,
                        "currency": "EUR",
                        "email": order_email,
                        "products": [
                            {"product_id": p[0], "name": p[1], "price": p[3]} for p in items
                        ],
                    },
                },
            )
            if order_email != email:
                yield (
                    "server",
                    {
                        "type": "identify",
                        "userId": user_id,
                        "timestamp": at(),
                        "traits": {"email": order_email},
                    },
                )
    if signup is not None and rng.random() < 0.04:
        yield _store_card(rng, index, signup, at())
    if identified and rng.random() < 0.08:
        company, domain, industry = rng.choice(COMPANIES)
        yield (
            "server",
            {
                "type": "group",
                "userId": user_id,
                "groupId": domain,
                "timestamp": at(),
                "traits": {"name": company, "domain": domain, "industry": industry},
            },
        )


def _store_card(
    rng: random.Random, index: int, signup: dict[str, Any], at: str
) -> tuple[str, dict[str, Any]]:
    """The same customer signing up for a loyalty card in a shop: the till system knows
    them by the card number and the email they gave there, so nothing but the name,
    birthday and town says it is them. Record linkage finds them: it merges the sure ones
    and queues the rest (People -> Possible duplicates)."""
    first, last = signup["firstName"], signup["lastName"]
    traits = {
        "firstName": first,
        "lastName": last,
        "email": f"{_ascii(first)[0]}{_ascii(last)}{rng.randint(10, 99)}@{rng.choice(DOMAINS)}",
        "address": signup["address"],
    }
    if "birthday" in signup:
        traits["birthday"] = signup["birthday"]
    card = [{"id": f"pos-{index:06d}", "type": "loyalty_card", "collection": "users"}]
    message = {
        "type": "identify",
        "anonymousId": f"till-{index:06d}",
        "timestamp": at,
        "traits": traits,
        "context": {"externalIds": card},
    }
    return "server", message


def _birthday(rng: random.Random) -> str:
    born = datetime(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    return born.date().isoformat()


def _ascii(name: str) -> str:
    return name.encode("ascii", "ignore").decode() or "user"


# --- the sales team --------------------------------------------------------------------

TEAM = [
    ("maya.ortiz@example.com", "Maya Ortiz", "manager"),
    ("sam.lee@example.com", "Sam Lee", "sales"),
    ("rita.novak@example.com", "Rita Novak", "sales"),
    ("sid.park@example.com", "Sid Park", "support"),
    ("mona.berg@example.com", "Mona Berg", "marketing"),
]
PIPELINES = [
    ("New business", 14, [("Qualified", 10), ("Demo", 30), ("Proposal", 60), ("Negotiation", 80)]),
    ("Renewals", 30, [("Due", 70), ("Quoted", 85)]),
]
NOTES = [
    "Asked about volume pricing for their team.",
    "Wants the proposal before the end of the quarter.",
    "Budget approved; legal review next.",
    "Comparing us with two other vendors.",
]
TASKS = ["Send the proposal", "Book a demo", "Follow up on pricing", "Check in after trial"]


def load_sales_team(runtime: Runtime, *, seed: int, password: str) -> None:
    """A believable sales team working the shop's customers: a manager and two reps in a
    team, two pipelines, owners and lifecycle stages, deals in every stage (some won or
    lost), and notes, calls and tasks (some overdue) on them, all made through the CRM
    services, so the audit log and the event log see them as they would see people."""
    rng = random.Random(seed + 1)  # noqa: S311 - synthetic data, reproducible by seed
    now = utcnow()
    with runtime.sessions() as db:
        users = {}
        for email, name, role in TEAM:
            user = auth_service.create_user(
                db, email=email, role=role, password=password, name=name
            )
            users[role if role != "sales" else email] = auth_service.Actor(
                user.id, email, Role(role)
            )
        team = auth_service.create_team(db, name="Field sales", actor=None)
        reps = [users["sam.lee@example.com"], users["rita.novak@example.com"]]
        for member in (users["manager"], *reps):
            auth_service.add_member(db, team_id=team.id, user_id=member.user_id, actor=None)
        _demo_rules(db, reps[0])
        pipelines = [
            create_pipeline(
                db,
                name=name,
                rotting_days=days,
                actor=None,
                stages=[StageSpec(stage, probability) for stage, probability in stages],
            )
            for name, days, stages in PIPELINES
        ]
        customers = list(
            db.scalars(
                select(Person.id)
                .join(Identity, Identity.person_id == Person.id)
                .where(Identity.kind == "user_id", Person.merged_into.is_(None))
                .order_by(Person.created_seq)
            )
        )
        spent = {
            p: (computed or {}).get("lifetime_value", 0)
            for p, computed in db.execute(select(Person.id, Person.computed))
        }
        for index, person in enumerate(customers):
            if index % 3 == 2:  # a third stay unassigned, in the pool ...
                if index % 9 == 2:  # ... but marketing qualifies some: a rule assigns them
                    contacts.update_contact(
                        db,
                        actor=users["marketing"],
                        person_id=person,
                        changes={"lifecycle_stage": "salesqualifiedlead"},
                    )
                continue
            rep = reps[index % 2]
            stage = rng.choice(["lead", "marketingqualifiedlead", "salesqualifiedlead", "customer"])
            if stage == "customer" and not spent.get(person):
                stage = "salesqualifiedlead"  # a customer is someone who bought
            contacts.update_contact(
                db,
                actor=users["manager"],
                person_id=person,
                changes={"owner_id": rep.user_id, "lifecycle_stage": stage},
            )
            if index % 5 == 0:
                _demo_deal(db, rng, now, rep, person, pipelines)
        db.commit()
    # The rules' runs do their work (as the running server would within seconds).
    run_until_idle(runtime.sessions, runtime.settings)
    # The CRM's changes are events in the log too: process them like the shop's.
    Processor(runtime.sessions, settings=runtime.settings).drain()


def _demo_rules(db: Session, rep: auth_service.Actor) -> None:
    """The demo's workflow rules, made before the sales work so that it fires them."""
    onboarding = {
        "name": "Onboard won customers",
        "description": "A won deal gets a kick-off task for its owner.",
        "trigger": {"type": "deal_won"},
        "actions": [
            {"type": "create_task", "subject": "Onboarding kick-off call", "due_in_days": 3}
        ],
    }
    qualified = {
        "name": "Sales-qualified leads to a rep",
        "description": "Marketing qualifies a lead nobody owns: it goes to a rep.",
        "trigger": {
            "type": "field_changed",
            "record_type": "person",
            "field": "lifecycle_stage",
            "to": "salesqualifiedlead",
        },
        "conditions": [{"field": "owner_id", "op": "empty"}],
        "actions": [
            {"type": "assign_owner", "user_id": str(rep.user_id)},
            {"type": "create_task", "subject": "Call the new lead", "due_in_hours": 24},
        ],
    }
    for rule in (onboarding, qualified):
        workflows.create_rule(db, actor=None, spec=RuleIn.model_validate(rule))


def _demo_deal(
    db: Session,
    rng: random.Random,
    now: datetime,
    rep: auth_service.Actor,
    person: uuid.UUID,
    pipelines: list[Pipeline],
) -> None:
    pipeline = rng.choice(pipelines)
    stage = rng.choice(stages_of(db, pipeline.id))
    deal = deals.create_deal(
        db,
        actor=rep,
        values={
            "name": f"{rng.choice(['Team', 'Annual', 'Pilot', 'Enterprise'])} plan",
            "pipeline_id": pipeline.id,
            "stage_id": stage.id,
            "amount": rng.choice([900, 2400, 4800, 12000, 30000]),
            "currency": rng.choice(["EUR", "EUR", "USD"]),
            "expected_close_date": (now + timedelta(days=rng.randint(-10, 120))).date(),
            "person_id": person,
        },
    )
    link = {"deal_id": deal.id, "person_id": person}
    activities.create_activity(
        db, actor=rep, kind="note", values={**link, "body": rng.choice(NOTES)}
    )
    activities.create_activity(
        db,
        actor=rep,
        kind="call",
        values={
            **link,
            "direction": "outbound",
            "duration_seconds": rng.randint(60, 1800),
            "outcome": rng.choice(["connected", "no_answer", "left_voicemail"]),
        },
    )
    due = now + timedelta(days=rng.randint(-3, 7), hours=rng.randint(0, 8))
    activities.create_activity(
        db,
        actor=rep,
        kind="task",
        values={
            **link,
            "subject": rng.choice(TASKS),
            "due_at": due,
            "remind_at": due - timedelta(hours=2),
        },
    )
    outcome = rng.random()
    if outcome < 0.15:
        deals.update_deal(db, actor=rep, deal_id=deal.id, changes={"status": "won"})
    elif outcome < 0.25:
        reason = rng.choice(["Price", "Chose a competitor", "No budget"])
        deals.update_deal(
            db, actor=rep, deal_id=deal.id, changes={"status": "lost", "lost_reason": reason}
        )


# --- the support desk ------------------------------------------------------------------

SUPPORT_EMAIL = "sid.park@example.com"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
SUPPORT_POLICIES: list[dict[str, Any]] = [
    {
        "name": "Urgent, around the clock",
        "priorities": ["urgent"],
        "targets": {"urgent": {"first_response": 30, "resolution": 240}},
        "timezone": "UTC",
        "working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "working_hours": [{"start": "00:00", "end": "24:00"}],
    },
    {
        "name": "Business hours",
        "targets": {
            "low": {"first_response": 480, "resolution": 2880},
            "normal": {"first_response": 240, "resolution": 1440},
            "high": {"first_response": 120, "resolution": 480},
        },
        "priorities": ["low", "normal", "high"],
        "timezone": "Europe/Berlin",
        "working_days": WEEKDAYS,
        "working_hours": [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:30"}],
        "day_hours": {"fri": [{"start": "09:00", "end": "15:00"}]},
        "holidays": ["2026-12-24", "2026-12-25", "2026-12-26", "2027-01-01"],
    },
]
SUBJECTS = [
    ("Order arrived damaged", "The box was crushed and the poles are bent."),
    ("Wrong size delivered", "I ordered 42 and got 44. Can I swap them?"),
    ("Refund not received", "I returned the jacket three weeks ago."),
    ("Cannot sign in", "The password reset email never arrives."),
    ("Where is my parcel?", "Tracking has not moved for five days."),
    ("Invoice with VAT number", "Our company needs an invoice with our VAT id."),
    ("Headlamp stopped charging", "It worked for two weeks, now nothing."),
    ("Change delivery address", "I moved last week; the order is not shipped yet."),
    ("Discount code rejected", "The newsletter code says it expired."),
    ("Double charged", "My card shows the order twice."),
]
REPLIES = [
    "Thanks for reaching out. I am looking into it now.",
    "Sorry about that! Could you send a photo of the item?",
    "I have asked our warehouse and will get back to you today.",
    "Good news: this is fixed on our side. Could you try again?",
]
NOTES = ["Carrier claim opened.", "Checked with billing: refund pending approval."]
# (how many, business time since creation as a part of the target it is about, the target,
#  the reply after this part of the first-response target (None: no reply), then: None,
#  "pending" at this part of resolution, or "solved" at this part of resolution)
SCENARIOS: list[tuple[int, float, str, float | None, tuple[str, float] | None]] = [
    (6, 0.3, "first_response", None, None),  # fresh, well inside
    (6, 0.4, "resolution", 0.3, None),  # answered, working on it
    (4, 0.9, "first_response", None, None),  # about to miss the first response
    (4, 0.9, "resolution", 0.5, None),  # about to miss the resolution
    (4, 1.6, "first_response", None, None),  # nobody answered in time
    (4, 1.3, "resolution", 0.5, None),  # answered, but not solved in time
    (3, 0.6, "resolution", 0.5, ("pending", 0.5)),  # waiting on the customer
    (6, 2.0, "resolution", 0.4, ("solved", 0.7)),  # solved in time
    (3, 2.5, "resolution", 1.2, ("solved", 1.4)),  # solved, both late
]


def load_support_desk(runtime: Runtime, *, seed: int) -> None:
    """Sid Park's support desk: two SLA policies and about forty tickets on the shop's
    customers, some well inside their targets, some near a breach, some breached, some
    waiting on the customer, some solved in time and some late, with replies and notes.

    Each history is written through the ticket services as it happened (their ``at``),
    counted back from now in the policy's business time, so the spread holds on whatever
    day the demo is loaded. The SLA check then announces the warnings and breaches."""
    rng = random.Random(seed + 2)  # noqa: S311 - synthetic data, reproducible by seed
    now = utcnow()
    with runtime.sessions() as db:
        user = db.scalar(select(User).where(User.email == SUPPORT_EMAIL))
        if user is None:
            return
        sid = auth_service.Actor(user.id, user.email, Role(user.role))
        for values in SUPPORT_POLICIES:
            ticket_policies.create_policy(db, actor=None, values=values)
        customers = list(
            db.execute(
                select(Person.id, PersonCompany.company_id)
                .join(Identity, Identity.person_id == Person.id)
                .outerjoin(PersonCompany, PersonCompany.person_id == Person.id)
                .where(Identity.kind == "user_id", Person.merged_into.is_(None))
                .order_by(Person.created_seq)
            )
        )
        number = 0
        for count, part, target, reply, then in SCENARIOS:
            for _ in range(count):
                person, company = customers[number % len(customers)] if customers else (None, None)
                values = {
                    "person_id": person,
                    "company_id": company,
                    "assignee_id": None if number % 8 == 7 else sid.user_id,  # some queue
                    "priority": rng.choice(["low", "normal", "normal", "high", "urgent"]),
                    "channel": rng.choice(["email", "email", "web", "chat", "phone", "form"]),
                }
                story = (part, target, reply, then)
                _demo_ticket(db, rng, sid, now, number, values, story)
                number += 1
        db.commit()
    check_sla(runtime.sessions)
    Processor(runtime.sessions, settings=runtime.settings).drain()


def _demo_ticket(
    db: Session,
    rng: random.Random,
    sid: auth_service.Actor,
    now: datetime,
    number: int,
    values: dict[str, Any],
    story: tuple[float, str, float | None, tuple[str, float] | None],
) -> None:
    part, target, reply, then = story
    policy = ticket_policies.match_policy(
        db, priority=values["priority"], channel=values["channel"]
    )
    if policy is None:
        return
    calendar = ticket_clock.calendar_of(policy)
    terms = policy.targets[values["priority"]]
    first, resolution = (timedelta(minutes=terms[t] or 0) for t in ticket_clock.TARGETS)
    created = calendar.add(now, -(first if target == "first_response" else resolution) * part)
    subject, description = SUBJECTS[number % len(SUBJECTS)]
    values = {**values, "subject": subject, "description": description}
    # Requests come in by email, chat and forms: the system opens the ticket, Sid works it.
    ticket = tickets.create_ticket(db, actor=None, values=values, at=created)
    if number % 3 == 0:
        note = rng.choice(NOTES)
        tickets.add_comment(db, actor=sid, ticket_id=ticket.id, body=note, public=False, at=created)
    if reply is not None:
        at = calendar.add(created, first * reply)
        body = rng.choice(REPLIES)
        tickets.add_comment(db, actor=sid, ticket_id=ticket.id, body=body, at=at)
    if then is not None:
        status, when = then
        at = calendar.add(created, resolution * when)
        tickets.update_ticket(db, actor=sid, ticket_id=ticket.id, changes={"status": status}, at=at)
        if status == "solved" and number % 2 == 0:
            closed = min(now, at + timedelta(days=1))
            tickets.update_ticket(
                db, actor=sid, ticket_id=ticket.id, changes={"status": "closed"}, at=closed
            )


# --- web forms -------------------------------------------------------------------------

DEMO_FORM = {
    "name": "Request a demo",
    "slug": "request-a-demo",
    "description": "Tell us about your team and we will show you around.",
    "fields": [
        {"key": "email", "label": "Work email", "type": "email", "required": True,
         "identifier": "email"},
        {"key": "name", "label": "Name", "type": "text", "required": True, "trait": "name"},
        {"key": "company", "label": "Company", "type": "text", "trait": "company_name"},
        {"key": "team_size", "label": "Team size", "type": "select",
         "options": ["1-10", "11-50", "51-200", "201+"], "trait": "team_size"},
        {"key": "message", "label": "What would you like to see?", "type": "textarea"},
    ],
    "success_message": "Thanks! Someone from our sales team will be in touch within a day.",
}  # fmt: skip
NEWSLETTER_FORM = {
    "name": "Newsletter",
    "slug": "newsletter",
    "submit_label": "Subscribe",
    "fields": [
        {"key": "email", "label": "Email", "type": "email", "required": True,
         "identifier": "email"},
        {"key": "first_name", "label": "First name", "type": "text", "trait": "firstName"},
    ],
    "consents": [
        {"purpose": "marketing", "label": "Send me the monthly newsletter. I can unsubscribe "
         "at any time.", "required": True},
    ],
}  # fmt: skip
CAMPAIGNS: list[dict[str, str]] = [
    {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring-sale",
     "utm_term": "trail shoes", "patron_referrer": "https://www.google.com/"},
    {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "march-digest"},
    {"utm_source": "linkedin", "utm_medium": "social", "utm_campaign": "team-webinar",
     "patron_referrer": "https://www.linkedin.com/"},
    {"patron_referrer": "https://duckduckgo.com/"},
    {},
]  # fmt: skip


def load_forms(runtime: Runtime, *, seed: int, submissions: int) -> None:
    """Two forms ("Request a demo" for the Field sales team, "Newsletter" with consent) and
    their submissions through the service the public endpoint calls: from shoppers who
    browsed anonymously first, from new visitors, with campaigns, and a few bots."""
    rng = random.Random(seed + 2)  # noqa: S311 - synthetic data, reproducible by seed
    now = utcnow()
    with runtime.sessions() as db:
        team = db.scalar(select(Team).where(Team.name == "Field sales"))
        demo = forms.create_form(
            db, actor=None, values={**DEMO_FORM, "team_id": team.id if team else None}
        )
        newsletter = forms.create_form(db, actor=None, values=NEWSLETTER_FORM)
        browsers = _anonymous_browsers(db)
        db.commit()
    with runtime.sessions() as db:
        for index in range(submissions):
            form = demo if index % 3 else newsletter
            meta = SubmissionMeta(
                received_at=now - timedelta(days=rng.uniform(0, 30)),
                ip=f"198.51.100.{index % 250}",
                user_agent=rng.choice(AGENTS),
            )
            payload = _answers(rng, index, form, browsers)
            submit(db, form=form, payload=payload, meta=meta, settings=runtime.settings)
        db.commit()
    Processor(runtime.sessions, settings=runtime.settings).drain()


def _anonymous_browsers(db: Session) -> list[str]:
    """Anonymous ids of shoppers who browsed and never signed up."""
    known = select(Identity.person_id).where(Identity.kind != "anonymous_id")
    return list(
        db.scalars(
            select(Identity.value)
            .where(Identity.kind == "anonymous_id", Identity.person_id.not_in(known))
            .order_by(Identity.id)
            .limit(200)
        )
    )


def _answers(rng: random.Random, index: int, form: Form, browsers: list[str]) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    company, domain, _industry = rng.choice(COMPANIES)
    email = f"{_ascii(first)}.{_ascii(last)}.lead{index}@{domain}".lower()
    answers: dict[str, Any] = {
        "email": email,
        "name": f"{first} {last}",
        "first_name": first,
        "company": company,
        "team_size": rng.choice(["1-10", "11-50", "51-200", "201+"]),
        "message": rng.choice(["Pricing for our team", "Integrations", "A walkthrough", ""]),
        "consent.marketing": "true",
        **rng.choice(CAMPAIGNS),
    }
    path = "/demo" if form.slug == "request-a-demo" else "/newsletter"
    query = "&".join(f"{k}={v}" for k, v in answers.items() if k.startswith("utm_"))
    answers["patron_page_url"] = f"https://shop.example{path}" + (f"?{query}" if query else "")
    if browsers and rng.random() < 0.4:
        answers["patron_anonymous_id"] = browsers.pop()
    if index % 40 == 7:  # a bot: it fills every input, the invisible one too
        answers["patron_website"] = "http://cheap-pills.example"
    return answers


# --- leads: scoring and assignment -----------------------------------------------------

SCORING_RULES: list[dict[str, Any]] = [
    {
        "name": "Ordered recently",
        "conditions": [{"kind": "event", "event": "Order Completed", "within_days": 60}],
        "points": 25,
        "half_life_days": 30,
    },
    {
        "name": "Browsing products",
        "conditions": [
            {"kind": "event", "event": "Product Viewed", "within_days": 30, "min_count": 3}
        ],
        "points": 15,
        "half_life_days": 14,
    },
    {
        "name": "Filled a cart",
        "conditions": [{"kind": "event", "event": "Product Added", "within_days": 30}],
        "points": 10,
        "half_life_days": 14,
    },
    {
        "name": "Works at a company",
        "conditions": [{"kind": "company", "name": "industry", "op": "exists"}],
        "points": 15,
    },
    {
        "name": "Software or energy company",
        "conditions": [
            {"kind": "company", "name": "industry", "op": "in", "value": ["Software", "Energy"]}
        ],
        "points": 10,
    },
    {"name": "Seen this week", "conditions": [{"kind": "recency", "within_days": 7}], "points": 10},
    {
        "name": "Sales qualified",
        "conditions": [
            {"kind": "field", "name": "lifecycle_stage", "op": "eq", "value": "salesqualifiedlead"}
        ],
        "points": 20,
    },
    {
        "name": "Unqualified",
        "conditions": [
            {"kind": "field", "name": "lead_status", "op": "eq", "value": "unqualified"}
        ],
        "points": -30,
    },
]
INSIDE_REP = ("lee.wong@example.com", "Lee Wong", "sales")


def load_leads(runtime: Runtime, *, seed: int, password: str) -> None:
    """Lead scoring and assignment at work: scoring rules; won and lost outcomes for some of
    the sales team's leads that follow from what the leads did (orders, a company, a
    country), so the predictive model has history to learn from; newsletter sign-ups in
    the pool become leads; two teams with capacities, weights, a rule for EMEA and a
    default team; then the model is trained, everyone scored, and the leads assigned
    (those beyond every team's capacity wait, as they would)."""
    rng = random.Random(seed + 2)  # noqa: S311 - synthetic data, reproducible by seed
    with runtime.sessions() as db:
        for rule in SCORING_RULES:
            lead_scoring.create_rule(db, actor=None, values=rule)
        _decide_outcomes(db, rng)
        _pool_becomes_leads(db, rng)
        _assignment_setup(db, password)
        db.commit()
    Processor(runtime.sessions, settings=runtime.settings).drain()
    lead_jobs.retrain(runtime.sessions, runtime.settings)
    lead_jobs.refresh_scores(runtime.sessions, runtime.settings, full=True)
    lead_jobs.assign_waiting(runtime.sessions)
    Processor(runtime.sessions, settings=runtime.settings).drain()


def _decide_outcomes(db: Session, rng: random.Random) -> None:
    """Close some owned leads as won or lost, more often won when they ordered, work at a
    company or are in Germany or France."""
    pipeline = db.scalar(select(Pipeline).where(Pipeline.name == "New business"))
    with_deals = set(db.scalars(select(Deal.person_id)))
    open_leads = list(
        db.scalars(
            select(Person)
            .where(
                Person.merged_into.is_(None),
                Person.owner_id.is_not(None),
                Person.lifecycle_stage.in_(
                    ("lead", "marketingqualifiedlead", "salesqualifiedlead")
                ),
            )
            .order_by(Person.created_seq)
        )
    )
    facts = {}
    for start in range(0, len(open_leads), 500):
        chunk = open_leads[start : start + 500]
        facts.update(load_facts(db, chunk, (), now=utcnow(), companies=True, count_events=True))
    owners = {u.id: u for u in db.scalars(select(User))}
    for person in open_leads:
        if person.id in with_deals or rng.random() > 0.5 or pipeline is None:
            continue
        about = facts[person.id]
        country = lookup(person.traits, "address.country")
        odds = -1.2 + 2.0 * ((person.computed or {}).get("lifetime_value", 0) > 0)
        odds += 1.2 * bool(about.companies) + 0.8 * (country in ("DE", "FR"))
        odds -= 0.8 * (country == "JP")
        odds += 0.4 * min(about.event_counts.get("Product Viewed", 0), 4) / 4
        won = rng.random() < 1 / (1 + math.exp(-odds))
        owner = owners[person.owner_id] if person.owner_id else None
        rep = auth_service.Actor(owner.id, owner.email, Role(owner.role)) if owner else None
        if not won and rng.random() < 0.5:
            contacts.update_contact(
                db, actor=rep, person_id=person.id, changes={"lead_status": "unqualified"}
            )
            continue
        deal = deals.create_deal(
            db,
            actor=rep,
            values={
                "name": f"{rng.choice(['Team', 'Annual', 'Pilot'])} plan",
                "pipeline_id": pipeline.id,
                "amount": rng.choice([900, 2400, 4800, 12000]),
                "currency": "EUR",
                "person_id": person.id,
            },
        )
        change: dict[str, Any] = {"status": "won"}
        if not won:
            change = {"status": "lost", "lost_reason": rng.choice(["Price", "No budget"])}
        deals.update_deal(db, actor=rep, deal_id=deal.id, changes=change)


def _pool_becomes_leads(db: Session, rng: random.Random) -> None:
    """Most of the unassigned customers signed up for the newsletter: leads, unowned."""
    pool = db.scalars(
        select(Person.id)
        .join(Identity, Identity.person_id == Person.id)
        .where(
            Identity.kind == "user_id",
            Person.merged_into.is_(None),
            Person.owner_id.is_(None),
            Person.lifecycle_stage.is_(None),
        )
        .order_by(Person.created_seq)
    )
    for person in list(pool):
        if rng.random() < 0.7:
            contacts.update_contact(
                db, actor=None, person_id=person, changes={"lifecycle_stage": "lead"}
            )


def _assignment_setup(db: Session, password: str) -> None:
    """Field sales takes Germany and France (Sam twice Rita's share); everyone else goes
    to Inside sales; the manager opts out of taking leads herself."""
    email, name, role = INSIDE_REP
    lee = auth_service.create_user(db, email=email, role=role, password=password, name=name)
    by_email = {u.email: u for u in db.scalars(select(User))}
    field = db.scalar(select(Team).where(Team.name == "Field sales"))
    assert field is not None
    inside = auth_service.create_team(db, name="Inside sales", actor=None)
    for member in (lee, by_email["rita.novak@example.com"]):
        auth_service.add_member(db, team_id=inside.id, user_id=member.id, actor=None)
    settings: list[tuple[uuid.UUID, str, dict[str, Any]]] = [
        (field.id, "sam.lee@example.com", {"weight": 2, "capacity": 60}),
        (field.id, "rita.novak@example.com", {"capacity": 40}),
        (field.id, "maya.ortiz@example.com", {"available": False}),
        (inside.id, "lee.wong@example.com", {"capacity": 300}),
        (inside.id, "rita.novak@example.com", {"capacity": 40}),
    ]
    for team_id, member_email, changes in settings:
        lead_assignment.update_member(
            db, actor=None, team_id=team_id, user_id=by_email[member_email].id, changes=changes
        )
    emea = [{"kind": "field", "name": "country", "op": "in", "value": ["DE", "FR"]}]
    lead_assignment.create_rule(
        db, actor=None, values={"name": "EMEA", "team_id": field.id, "conditions": emea}
    )
    lead_assignment.set_default_team(db, actor=None, team_id=inside.id)
