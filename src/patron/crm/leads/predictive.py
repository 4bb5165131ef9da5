"""The predictive lead score: a naive Bayes model trained on won and lost history.

Labels: a person with a won deal, or in lifecycle stage customer or evangelist, is won; a
person whose deals are all lost, or whose lead status is unqualified, is lost (won wins a
tie); everyone else is unlabelled. Each person becomes a set of categorical features:

- traits (nested ones by dotted path): categories when few distinct values recur, numbers
  in quantile bins; identifiers and free text (email, names, one-off values) are left out;
- computed traits, binned; the industry and size band of the person's companies;
- how often each of the commonest events happened (0, 1, 2-3, 4-7, 8-15, 16+), page views
  included; CRM events are left out, since deals won and lost are the labels themselves.

Per feature value the model counts won and lost persons (Odoo's frequency table), with
Laplace smoothing so that an unseen combination is not certain, and a missing value is a
value of its own. The log-odds of winning is the prior log-odds plus each feature's
log-likelihood ratio, scaled by a temperature fitted on the training set (naive Bayes
double-counts correlated features, which makes raw probabilities overconfident; scaling
keeps the ranking and makes the numbers honest). The explanation lists the features with
the largest ratios, up and down.

Written by hand rather than with scikit-learn: it needs per-feature explanations, JSON
parameters stored with a version, and no numeric stack in the server.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor
from patron.core.clock import as_utc, utcnow
from patron.crm.leads.conditions import Facts, load_facts
from patron.crm.leads.models import ScoringModel
from patron.crm.models import Deal
from patron.identity.models import Person

MIN_PER_CLASS = 10
ALPHA = 1.0
CHUNK = 500
# Identifiers and free text: predicting from them would memorise persons.
EXCLUDED = {
    "email",
    "phone",
    "name",
    "firstname",
    "lastname",
    "first_name",
    "last_name",
    "birthday",
    "userid",
    "user_id",
    "id",
    "username",
    "avatar",
    "description",
    "website",
    "address.street",
    "address.postalcode",
    "address.postal_code",
    "address.line1",
    "address.line2",
    "createdat",
    "created_at",
}
MIN_COVERAGE = 0.02
MAX_CATEGORIES = 40
MIN_VALUE_COUNT = 3
MAX_EVENT_FEATURES = 30
BINS = 5
COUNT_BINS = ((0, "0"), (1, "1"), (3, "2-3"), (7, "4-7"), (15, "8-15"))
SIZE_BANDS = ((10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"), (5000, "1001-5000"))
NONE = "(none)"
OTHER = "(other)"
TEMPERATURES = (1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05)
WON_STAGES = ("customer", "evangelist")
TOP_FACTORS = 4


# --- labels ----------------------------------------------------------------------------


def labelled(session: Session) -> dict[uuid.UUID, bool]:
    """Every live person whose outcome is known: True won, False lost."""
    live = func.coalesce(Person.merged_into, Person.id)
    statuses: dict[uuid.UUID, set[str]] = {}
    for person_id, status in session.execute(
        select(live, Deal.status).join(Person, Person.id == Deal.person_id)
    ):
        statuses.setdefault(person_id, set()).add(status)
    out = {p: False for p, s in statuses.items() if s == {"lost"}}
    unqualified = select(Person.id).where(
        Person.merged_into.is_(None), Person.lead_status == "unqualified"
    )
    out.update(dict.fromkeys(session.scalars(unqualified), False))
    out.update({p: True for p, s in statuses.items() if "won" in s})
    stages = select(Person.id).where(
        Person.merged_into.is_(None), Person.lifecycle_stage.in_(WON_STAGES)
    )
    out.update(dict.fromkeys(session.scalars(stages), True))
    merged = set(session.scalars(select(Person.id).where(Person.merged_into.is_not(None))))
    return {p: won for p, won in out.items() if p not in merged}


# --- features --------------------------------------------------------------------------


def raw_features(facts: Facts) -> dict[str, Any]:
    """A person's candidate features with their raw values (before binning)."""
    person = facts.person
    out: dict[str, Any] = {}
    for path, value in _flatten(person.traits or {}):
        out[f"trait:{path}"] = value
    for path, value in _flatten(person.computed or {}):
        out[f"computed:{path}"] = value
    companies = sorted(facts.companies, key=lambda c: (c.name or "", str(c.id)))
    out["company:industry"] = next((c.industry for c in companies if c.industry), None)
    out["company:size"] = next((c.size for c in companies if c.size is not None), None)
    for name, count in facts.event_counts.items():
        out[f"event:{name}"] = count
    return out


def _flatten(
    values: Mapping[str, Any], prefix: str = "", depth: int = 0
) -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 1:
            yield from _flatten(value, f"{path}.", depth + 1)
        elif isinstance(value, str | int | float | bool) and value != "":
            yield path, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return None


def _category(value: Any) -> str:
    return str(value).strip().casefold()[:100]


def learn_spec(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which candidate features are worth keeping, and how numbers are binned."""
    seen: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.items():
            if value is not None:
                seen.setdefault(name, []).append(value)
    spec: dict[str, Any] = {}
    total = max(len(rows), 1)
    events = sorted((n for n in seen if n.startswith("event:")), key=lambda n: (-len(seen[n]), n))[
        :MAX_EVENT_FEATURES
    ]
    for name, values in seen.items():
        if name.startswith("event:"):
            if name in events and len(values) / total >= MIN_COVERAGE:
                spec[name] = {"type": "count"}
            continue
        if name == "company:size":
            spec[name] = {"type": "size"}
            continue
        kept = _describe_feature(name, values, total)
        if kept is not None:
            spec[name] = kept
    return spec


def _describe_feature(name: str, values: list[Any], total: int) -> dict[str, Any] | None:
    path = name.split(":", 1)[1].casefold()
    if path in EXCLUDED or path.split(".")[0] in EXCLUDED or len(values) / total < MIN_COVERAGE:
        return None
    numbers = [n for n in map(_number, values) if n is not None]
    if len(numbers) == len(values) and len(set(numbers)) > BINS:
        ordered = sorted(numbers)
        edges = sorted({ordered[len(ordered) * i // BINS] for i in range(1, BINS)})
        return {"type": "number", "edges": edges}
    counts = Counter(_category(v) for v in values)
    recurring = sum(n for n in counts.values() if n >= MIN_VALUE_COUNT)
    if len(counts) <= MAX_CATEGORIES or recurring >= len(values) / 2:
        return {"type": "category"}
    return None  # mostly one-off values: an identifier or free text


def encode(spec: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, str]:
    """A person's features as categories, for every feature of the spec."""
    out: dict[str, str] = {}
    for name, how in spec.items():
        value = raw.get(name)
        kind = how["type"]
        if kind == "count":
            out[name] = _count_bin(int(value or 0))
        elif value is None:
            out[name] = NONE
        elif kind == "size":
            out[name] = _size_band(value)
        elif kind == "number":
            number = _number(value)
            out[name] = NONE if number is None else _number_bin(number, how["edges"])
        else:
            out[name] = _category(value)
    return out


def _count_bin(count: int) -> str:
    return next((label for top, label in COUNT_BINS if count <= top), "16+")


def _size_band(size: Any) -> str:
    number = _number(size)
    if number is None:
        return NONE
    return next((label for top, label in SIZE_BANDS if number <= top), "5000+")


def _number_bin(number: float, edges: Sequence[float]) -> str:
    low = None
    for edge in edges:
        if number <= edge:
            return f"<={_short(edge)}" if low is None else f"{_short(low)}..{_short(edge)}"
        low = edge
    return f">{_short(edges[-1])}" if edges else "any"


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


# --- the model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A trained model: the spec and the per-value counts among won and lost persons."""

    version: int
    spec: dict[str, Any]
    counts: dict[str, dict[str, list[int]]]
    won: int
    lost: int
    alpha: float = ALPHA
    temperature: float = 1.0

    @classmethod
    def from_row(cls, row: ScoringModel) -> Model:
        p = row.parameters
        return cls(
            row.version,
            p["spec"],
            p["counts"],
            int(p["won"]),
            int(p["lost"]),
            float(p.get("alpha", ALPHA)),
            float(p.get("temperature", 1.0)),
        )

    @property
    def prior(self) -> float:
        return math.log(self.won / self.lost)

    def ratios(self, features: Mapping[str, str]) -> list[tuple[str, str, float]]:
        """(feature, value, log-likelihood ratio of won over lost) for each known value."""
        out = []
        for name, value in features.items():
            table = self.counts.get(name)
            if not table:
                continue
            if value not in table:
                value = OTHER if OTHER in table else value
                if value not in table:
                    continue  # never seen in training: it says nothing
            won, lost = table[value]
            k = len(table)
            p_won = (won + self.alpha) / (self.won + self.alpha * k)
            p_lost = (lost + self.alpha) / (self.lost + self.alpha * k)
            out.append((name, value, math.log(p_won / p_lost)))
        return out

    def probability(self, features: Mapping[str, str]) -> float:
        evidence = sum(r for _, _, r in self.ratios(features))
        return _sigmoid(self.prior + self.temperature * evidence)

    def score(self, facts: Facts) -> tuple[float, dict[str, Any]]:
        """The score 0..100 (the probability of winning, in percent) and its explanation."""
        features = encode(self.spec, raw_features(facts))
        ratios = [(n, v, self.temperature * r) for n, v, r in self.ratios(features)]
        p = _sigmoid(self.prior + sum(r for _, _, r in ratios))
        up = sorted((x for x in ratios if x[2] > 0), key=lambda x: -x[2])[:TOP_FACTORS]
        down = sorted((x for x in ratios if x[2] < 0), key=lambda x: x[2])[:TOP_FACTORS]
        factors = [
            {"name": f"{_label(n)} = {v}", "effect": round(r, 3), "feature": n, "value": v}
            for n, v, r in sorted([*up, *down], key=lambda x: -abs(x[2]))
        ]
        explanation = {
            "factors": factors,
            "base_rate": round(100 * self.won / (self.won + self.lost), 1),
            "log_odds": round(self.prior + sum(r for _, _, r in ratios), 3),
        }
        return round(100 * p, 1), explanation


def _label(feature: str) -> str:
    kind, _, name = feature.partition(":")
    if kind == "event":
        return "pages viewed" if name == "(page)" else f"'{name}' events"
    if kind == "company":
        return f"company {name}"
    if kind == "computed":
        return f"computed.{name}"
    return name


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


# Parsed models by (version, training time): a process may talk to several databases
# (tests, benchmarks), whose version numbers alone would collide.
_CACHE: dict[tuple[int, str], Model] = {}
CACHED_MODELS = 4


def current_model(session: Session) -> Model | None:
    """The latest trained model (parsed once per process and training), or None."""
    row = session.execute(
        select(ScoringModel.version, ScoringModel.trained_at)
        .where(ScoringModel.status == "trained")
        .order_by(ScoringModel.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    key = (row.version, as_utc(row.trained_at).isoformat())
    if key not in _CACHE:
        if len(_CACHE) >= CACHED_MODELS:
            _CACHE.clear()
        _CACHE[key] = Model.from_row(session.get_one(ScoringModel, row.version))
    return _CACHE[key]


def latest_attempt(session: Session) -> ScoringModel | None:
    """The last training, whether it had enough history or not."""
    return session.scalar(select(ScoringModel).order_by(ScoringModel.version.desc()).limit(1))


# --- training --------------------------------------------------------------------------


def gather(
    session: Session, person_ids: Sequence[uuid.UUID]
) -> Iterator[tuple[uuid.UUID, dict[str, Any]]]:
    """Each person's raw features, loaded in chunks."""
    ids = list(person_ids)
    now = utcnow()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        persons = list(session.scalars(select(Person).where(Person.id.in_(chunk))))
        facts = load_facts(session, persons, (), now=now, companies=True, count_events=True)
        for person_id, about in facts.items():
            yield person_id, raw_features(about)


def train(
    session: Session,
    *,
    actor: Actor | None = None,
    persons: Iterable[uuid.UUID] | None = None,
) -> ScoringModel:
    """Train on the won and lost history (of ``persons`` only, when given: a held-out
    evaluation) and store the result as a new version. Too little history is a state,
    not an error: the version records why, and the model in use stays as it was."""
    labels = labelled(session)
    if persons is not None:
        wanted = set(persons)
        labels = {p: won for p, won in labels.items() if p in wanted}
    won = sum(labels.values())
    lost = len(labels) - won
    row = ScoringModel(won=won, lost=lost, trained_by=actor.email if actor else "system")
    if won < MIN_PER_CLASS or lost < MIN_PER_CLASS:
        row.status = "insufficient"
        row.message = (
            f"not enough history to train: {won} won, {lost} lost "
            f"(at least {MIN_PER_CLASS} of each are needed)"
        )
        row.parameters = {}
    else:
        raws = dict(gather(session, sorted(labels, key=str)))
        row.status, row.parameters = "trained", fit(raws, labels)
        row.message = f"trained on {won} won and {lost} lost"
    session.add(row)
    session.flush()
    return row


def fit(
    raws: Mapping[uuid.UUID, Mapping[str, Any]], labels: Mapping[uuid.UUID, bool]
) -> dict[str, Any]:
    """The model's parameters from raw features and labels."""
    ids = [p for p in raws if p in labels]
    spec = learn_spec([raws[p] for p in ids])
    encoded = {p: encode(spec, raws[p]) for p in ids}
    counts: dict[str, dict[str, list[int]]] = {name: {} for name in spec}
    for p in ids:
        slot = 0 if labels[p] else 1
        for name, value in encoded[p].items():
            counts[name].setdefault(value, [0, 0])[slot] += 1
    counts = {name: _fold_rare(table) for name, table in counts.items()}
    won = sum(1 for p in ids if labels[p])
    params = {"spec": spec, "counts": counts, "won": won, "lost": len(ids) - won, "alpha": ALPHA}
    model = Model.from_row(ScoringModel(version=0, parameters=params))
    params["temperature"] = _fit_temperature(model, [(encoded[p], labels[p]) for p in ids])
    return params


def _fold_rare(table: dict[str, list[int]]) -> dict[str, list[int]]:
    """Values seen fewer than MIN_VALUE_COUNT times pool into ``(other)``."""
    out: dict[str, list[int]] = {}
    for value, (won, lost) in table.items():
        key = value if won + lost >= MIN_VALUE_COUNT or value == NONE else OTHER
        slot = out.setdefault(key, [0, 0])
        slot[0] += won
        slot[1] += lost
    return out


def _fit_temperature(model: Model, rows: Sequence[tuple[Mapping[str, str], bool]]) -> float:
    """The scale of the evidence that makes the training set's probabilities fit best."""
    evidence = [(sum(r for _, _, r in model.ratios(f)), won) for f, won in rows]

    def loss(t: float) -> float:
        total = 0.0
        for e, won in evidence:
            p = min(max(_sigmoid(model.prior + t * e), 1e-9), 1 - 1e-9)
            total -= math.log(p if won else 1 - p)
        return total

    return min(TEMPERATURES, key=loss)


def predict(
    session: Session, model: Model, person_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, float]:
    """The model's probability of winning for each person (for evaluations)."""
    return {p: model.probability(encode(model.spec, raw)) for p, raw in gather(session, person_ids)}


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve: the chance a random won person scores above a random lost
    one (ties count half). None when either class is missing."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    won_ranks = sum(r for r, won in zip(ranks, labels, strict=True) if won)
    return (won_ranks - positives * (positives + 1) / 2) / (positives * negatives)
