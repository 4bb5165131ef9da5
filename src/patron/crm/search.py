"""Finding contacts and companies by words: every word must be found in the record's search
document (a substring, in any case).

A person's document holds their names (the visible ``name``, ``firstName`` and
``lastName`` traits), every email and phone identity, and the names of their companies; a
company's, its name and domain. Documents are built in SQL from those records, refreshed
for the persons each processing batch touched and for the records the CRM changes, and
indexed for substring search: SQLite's FTS5 trigram index, PostgreSQL's pg_trgm. A word of
fewer than three characters is still found, by a scan of the documents.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    and_,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import column, table

from patron.core.db import SQLITE_FOLD, plan_each_search
from patron.core.dialect import dialect_insert, dialect_name, json_text
from patron.core.pagination import COUNT_LIMIT
from patron.crm.models import Company, PersonCompany, SearchDocument
from patron.identity.models import Identity, Person

PERSON, COMPANY = "person", "company"
SEARCHED_KINDS = ("email", "phone")
NAME_TRAITS = ("name", "firstName", "lastName")
MAX_WORDS = 10
CHUNK = 500


def _fts(record_type: str) -> Any:
    """The FTS5 table over the documents of one kind (SQLite only; made by migration 0014)."""
    return table(f"search_fts_{record_type}", column("rowid"), column("document"))


SEPARATOR = "\n"


def _joined(parts: Sequence[ColumnElement[Any]]) -> ColumnElement[str]:
    """The non-null parts, one a line."""
    joined: ColumnElement[str] = func.coalesce(parts[0], "")
    for part in parts[1:]:
        joined = joined + SEPARATOR + func.coalesce(part, "")
    return joined


def _aggregated(value: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.string_agg(value, SEPARATOR)
    return func.group_concat(value, SEPARATOR)


Documents = Select[str, uuid.UUID, str, uuid.UUID | None]
DOCUMENT_COLUMNS = ["record_type", "record_id", "document", "owner_id"]


def _person_documents(dialect: str) -> Documents:
    identities = (
        select(_aggregated(Identity.value, dialect))
        .where(Identity.person_id == Person.id, Identity.kind.in_(SEARCHED_KINDS))
        .scalar_subquery()
    )
    companies = (
        select(_aggregated(Company.name, dialect))
        .join(PersonCompany, PersonCompany.company_id == Company.id)
        .where(PersonCompany.person_id == Person.id)
        .scalar_subquery()
    )
    names = [json_text(Person.traits, name) for name in NAME_TRAITS]
    document = _fold(_joined([*names, identities, companies]), dialect)
    return select(literal(PERSON), Person.id, document, Person.owner_id).where(
        Person.merged_into.is_(None)
    )


def company_document(dialect: str) -> ColumnElement[str]:
    """A company's document, computed from its own row: its name and domain."""
    fields: list[ColumnElement[Any]] = [Company.__table__.c.name, Company.__table__.c.domain]
    return _fold(_joined(fields), dialect)


def _company_documents(dialect: str) -> Documents:
    return select(literal(COMPANY), Company.id, company_document(dialect), Company.owner_id).where(
        Company.merged_into.is_(None)
    )


def _fold(value: ColumnElement[str] | str, dialect: str) -> ColumnElement[str]:
    """Lower case, by the database. Documents are kept folded, and a search tests them with
    ``LIKE`` on words folded by the same function.

    On PostgreSQL, ``lower()``: a quarter of the CPU of ``ILIKE``, which folds every
    document it tests (0.23 against 1.0 µs a document). On SQLite, whose ``lower()`` and
    ``LIKE`` know the case of ASCII letters only, the Unicode-aware function each
    connection registers: it is what lets "élodie" find "Élodie" when a search tests
    documents one by one (the trigram index folds case by itself)."""
    if dialect == "postgresql":
        return func.lower(value)
    folded: ColumnElement[str] = getattr(func, SQLITE_FOLD)(value)
    return folded


def _upsert(session: Session, documents: Documents) -> None:
    """Write these documents; one whose text and owner are as stored is left alone (no
    write, and no re-indexing of its trigrams by the full-text triggers)."""
    insert = dialect_insert(session, SearchDocument.__table__)
    statement = insert.from_select(DOCUMENT_COLUMNS, documents)
    excluded = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["record_type", "record_id"],
            set_={"document": excluded.document, "owner_id": excluded.owner_id},
            where=or_(
                SearchDocument.document.is_distinct_from(excluded.document),
                SearchDocument.owner_id.is_distinct_from(excluded.owner_id),
            ),
        )
    )


def _rebuild(
    session: Session,
    record_type: str,
    chunk: Sequence[uuid.UUID],
    documents: Documents,
    live: Select[uuid.UUID],
) -> None:
    """Documents of a chunk of records again: upserted for the ``live`` ones, removed for
    the others (merged away, or gone)."""
    session.execute(
        delete(SearchDocument).where(
            SearchDocument.record_type == record_type,
            SearchDocument.record_id.in_(chunk),
            SearchDocument.record_id.not_in(live),
        )
    )
    _upsert(session, documents)


def index_persons(session: Session, person_ids: Iterable[uuid.UUID]) -> None:
    """Build the documents of these persons again (a merged one's is removed)."""
    ids = sorted(set(person_ids), key=str)
    if not ids:
        return
    session.flush()
    dialect = dialect_name(session)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        live = select(Person.id).where(Person.id.in_(chunk), Person.merged_into.is_(None))
        documents = _person_documents(dialect).where(Person.id.in_(chunk))
        _rebuild(session, PERSON, chunk, documents, live)


def forget_merged(session: Session, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Merge hook: a merged person is found through its survivor, not on its own."""
    merged = [m for _, m in pairs]
    for start in range(0, len(merged), CHUNK):
        session.execute(
            delete(SearchDocument).where(
                SearchDocument.record_type == PERSON,
                SearchDocument.record_id.in_(merged[start : start + CHUNK]),
            )
        )


def index_companies(session: Session, company_ids: Iterable[uuid.UUID]) -> None:
    """Build the documents of these companies again, and of the persons linked to them
    (whose documents hold their companies' names)."""
    ids = sorted(set(company_ids), key=str)
    if not ids:
        return
    session.flush()
    dialect = dialect_name(session)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        live = select(Company.id).where(Company.id.in_(chunk), Company.merged_into.is_(None))
        documents = _company_documents(dialect).where(Company.id.in_(chunk))
        _rebuild(session, COMPANY, chunk, documents, live)
        linked = select(PersonCompany.person_id).where(PersonCompany.company_id.in_(chunk))
        index_persons(session, list(session.scalars(linked)))


def reindex(session: Session) -> int:
    """Build every document again (after a bulk load that went around processing);
    returns how many there are."""
    session.execute(delete(SearchDocument))
    _upsert(session, _person_documents(dialect_name(session)))
    _upsert(session, _company_documents(dialect_name(session)))
    return session.scalar(select(func.count()).select_from(SearchDocument)) or 0


# Above this many matching documents a search is "dense" (see :class:`Found`).
DENSE = 2_000
# A search's matches are counted up to this many ("1,000+" beyond), like every list's.
SEARCH_COUNT_LIMIT = COUNT_LIMIT


@dataclass(frozen=True)
class Found:
    """How a list keeps the records whose document holds every word of a search.

    ``condition`` goes on the list's statement. When few documents match, it is an ``IN``
    over their ids: the list sorts those few. When many do, it tests each row's own
    document, written as a scalar subquery so that the database cannot turn it into a join
    driven by the documents: the list then walks its own order (an index) and stops at a
    page, and a restricted user's count walks the records they may see. A sales rep's
    count read 20,000 matching documents to find 1,000 of theirs (160 ms at 1,000,000
    persons), where walking their records reads 7,000 documents.

    ``count_from`` (dense searches only) counts the other way, from the matching
    documents to the records: cheaper for a caller who sees every record, since every
    match then counts (the list adds its own conditions to it). Its ``FROM`` holds
    :class:`SearchDocument` itself, so conditions on the documents' copies of the owner
    apply to it. ``by_owner`` says whether an index serves those documents by owner and
    words together (PostgreSQL's, for persons: migration 0022): then a sales rep's count
    starts from the documents too, reading only the rep's that hold the words.
    """

    condition: ColumnElement[bool]
    count_from: Select[Any] | None = None
    by_owner: bool = False


def search_filter(
    session: Session,
    record_type: str,
    record_id: Any,
    search: str,
    *,
    entity: Any,
    own_document: ColumnElement[str] | None = None,
) -> Found | None:
    """How a list of ``entity`` (id column ``record_id``) keeps the records of
    ``record_type`` whose document holds every word of ``search``; None without words.

    ``own_document``, for a kind whose document is made of its own row's columns (a
    company's, :func:`company_document`), is that expression: a dense search then tests
    each row's columns where it stands, and counts the same way, with nothing to look up.
    A company search for "Software" at 100,000 companies walked 7,000 rows in name order
    reading each one's document by its key (25 ms), and its count joined the matching
    documents to every company (20 ms: the planner, which sees one record id column for
    two kinds of records, expected a tenth of the matches)."""
    words = search.split()[:MAX_WORDS]
    if not words:
        return None
    plan_each_search(session)  # every statement of a search stops at a page or a capped count
    documents = _documents_matching(session, record_type, words)
    probe = select(func.count()).select_from(documents.limit(DENSE + 1).subquery())
    if (session.scalar(probe) or 0) <= DENSE:
        return Found(record_id.in_(documents.with_only_columns(SearchDocument.record_id)))
    dialect = dialect_name(session)
    if own_document is not None:
        return Found(and_(*(_any_variant(w, dialect, own_document) for w in words)))
    # A document is read by its key and its text tested: cheaper than asking the text index
    # about one document at a time.
    own = (
        select(literal(1))
        .where(
            SearchDocument.record_type == record_type,
            SearchDocument.record_id == record_id,
            *(_any_variant(w, dialect) for w in words),
        )
        .scalar_subquery()
    )
    count_from = documents.with_only_columns(entity, maintain_column_froms=True).join(
        entity, record_id == SearchDocument.record_id
    )
    by_owner = dialect == "postgresql" and record_type == PERSON
    return Found(own.is_not(None), count_from, by_owner=by_owner)


def _documents_matching(
    session: Session, record_type: str, words: Sequence[str]
) -> Select[int, uuid.UUID]:
    """The documents of ``record_type`` holding every word (their ids and record ids)."""
    # The type is written into the statement, not bound: PostgreSQL then uses the type's
    # partial index even in a plan it prepared once for any parameters.
    kind = literal(record_type, literal_execute=True)
    statement: Select[int, uuid.UUID] = select(SearchDocument.id, SearchDocument.record_id).where(
        SearchDocument.record_type == kind
    )
    dialect = dialect_name(session)
    if dialect == "postgresql":
        return statement.where(*(_any_variant(w, dialect) for w in words))
    indexed = [w for w in words if len(w) >= TRIGRAM]
    for word in (w for w in words if len(w) < TRIGRAM):
        statement = statement.where(_contains(word, SearchDocument.document, dialect))
    if not indexed:
        return statement
    query = " AND ".join("(" + " OR ".join(_phrase(v) for v in _variants(w)) + ")" for w in indexed)
    fts = _fts(record_type)
    return statement.join(fts, fts.c.rowid == SearchDocument.id).where(
        literal_column(fts.name).op("MATCH")(query)
    )


# FTS5's trigram index finds words of at least this many characters.
TRIGRAM = 3


def _variants(word: str) -> list[str]:
    # A word with punctuation may be a phone number written another way: its digits count.
    digits = re.sub(r"[^\d]", "", word)
    return [word] + ([digits] if len(digits) >= TRIGRAM and digits != word else [])


def _phrase(word: str) -> str:
    """A word as an FTS5 phrase: literal, whatever it holds."""
    return '"' + word.replace('"', '""') + '"'


Document = SQLColumnExpression[str]


def _contains(word: str, document: Document, dialect: str) -> ColumnElement[bool]:
    # The word folded by the same function as the documents (see _fold); LIKE's
    # wildcards in it are literal.
    escaped = word.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return document.contains(_fold(escaped, dialect), escape="/")


def _any_variant(word: str, dialect: str, document: Document | None = None) -> ColumnElement[bool]:
    """``word`` or its digits (see :func:`_variants`) in ``document``, a search document's
    text unless given."""
    text = SearchDocument.document if document is None else document
    return or_(*(_contains(v, text, dialect) for v in _variants(word)))
