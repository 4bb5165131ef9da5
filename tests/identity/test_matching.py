"""The matching engine on real Splink and DuckDB, against synthetic persons of known truth."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest

from patron.identity._matching_synthetic import SyntheticPersons, generate_persons
from patron.identity.matching import (
    MIN_RECORDS_TO_TRAIN,
    CandidatePair,
    MatchRecord,
    find_duplicates,
    match_new,
)

# Persons who share nothing with anyone in the synthetic population, nor with each other.
STRANGERS = (
    MatchRecord(
        person_id="stranger-1",
        first_name="Zebedee",
        last_name="Quorthwaite",
        email="zq@example.org",
        phone="+15550100001",
        birth_date="1901-01-01",
        street="1 Nowhere Lane",
        city="Thule",
        postcode="ZZ99 9ZZ",
        country="GL",
    ),
    MatchRecord(
        person_id="stranger-2",
        first_name="Ottoline",
        last_name="Vexbridge",
        email="ov@example.net",
        phone="+15550100002",
        birth_date="1902-02-02",
        street="2 Elsewhere Row",
        city="Ultima",
        postcode="XX88 8XX",
        country="IS",
    ),
)


def pair_ids(pairs: list[CandidatePair]) -> set[tuple[str, str]]:
    return {(p.left_id, p.right_id) for p in pairs}


@pytest.fixture(scope="module")
def population() -> SyntheticPersons:
    return generate_persons(2_000, seed=11)


@pytest.fixture(scope="module")
def deduped(population: SyntheticPersons) -> list[CandidatePair]:
    return find_duplicates([*population.records, *STRANGERS])


def test_precision_and_recall_on_known_truth(
    population: SyntheticPersons, deduped: list[CandidatePair]
) -> None:
    truth = population.true_pairs()
    found = pair_ids(deduped) - {p for p in pair_ids(deduped) if "stranger" in p[0] + p[1]}
    hits = len(found & truth)
    assert len(truth) > 400
    assert hits / len(found) >= 0.99
    assert hits / len(truth) >= 0.95


def test_persons_with_nothing_in_common_never_pair(deduped: list[CandidatePair]) -> None:
    assert not [p for p in deduped if "stranger" in p.left_id + p.right_id]
    assert find_duplicates(STRANGERS) == []


def test_evidence_weights_and_prior_sum_to_the_match_weight(
    deduped: list[CandidatePair],
) -> None:
    assert deduped
    for pair in deduped:
        assert pair.left_id < pair.right_id
        assert 0.5 <= pair.match_probability <= 1
        assert [e.field for e in pair.evidence] == [
            "first_name",
            "last_name",
            "email",
            "phone",
            "birth_date",
            "address",
        ]
        total = pair.prior_match_weight + sum(e.match_weight for e in pair.evidence)
        assert math.isclose(total, pair.match_weight, abs_tol=1e-6)
        odds = 2**pair.match_weight
        assert math.isclose(odds / (1 + odds), pair.match_probability, abs_tol=1e-6)


def test_evidence_names_the_level_and_the_values() -> None:
    a = MatchRecord("a", "Ada", "Lovelace", "ADA@Example.com", "+441234567890", "1815-12-10")
    b = MatchRecord("b", "ada", "lovelace", "ada@example.com", None, "1815-12-01")
    (pair,) = find_duplicates([b, a])
    evidence = {e.field: e for e in pair.evidence}
    assert (pair.left_id, pair.right_id) == ("a", "b")
    assert evidence["email"].level == "exact"
    assert evidence["email"].left == evidence["email"].right == "ada@example.com"
    assert evidence["phone"].level == "null"
    assert evidence["phone"].match_weight == 0
    assert evidence["birth_date"].level == "one digit off"
    assert evidence["first_name"].match_weight > 0
    assert evidence["address"].level == "null"


def test_empty_and_single_inputs() -> None:
    one = [STRANGERS[0]]
    assert find_duplicates([]) == []
    assert find_duplicates(one) == []
    assert match_new([], one) == []
    assert match_new(one, []) == []
    assert match_new([], []) == []


def test_duplicate_person_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        find_duplicates([STRANGERS[0], STRANGERS[0]])
    with pytest.raises(ValueError, match="unique"):
        match_new([STRANGERS[0]], [STRANGERS[0]])


def test_tiny_input_uses_the_default_model_and_finds_the_obvious_pair() -> None:
    same = MatchRecord(
        "1", "Grace", "Hopper", "grace@navy.mil", "+12025550123", "1906-12-09", city="Arlington"
    )
    moved = dataclasses.replace(same, person_id="2", first_name="GRACE", city="New York")
    pairs = find_duplicates([same, moved, STRANGERS[0]])
    assert pair_ids(pairs) == {("1", "2")}


def test_all_null_columns_train_and_match(population: SyntheticPersons) -> None:
    sparse = [
        dataclasses.replace(r, phone=None, birth_date=None, street=None, postcode=None)
        for r in population.records[: MIN_RECORDS_TO_TRAIN + 300]
    ]
    pairs = find_duplicates(sparse)
    truth = population.true_pairs([r.person_id for r in sparse])
    found = pair_ids(pairs)
    assert len(found & truth) / len(found) >= 0.8
    for pair in pairs:
        evidence = {e.field: e for e in pair.evidence}
        assert evidence["phone"].level == evidence["birth_date"].level == "null"
    nothing = [MatchRecord(f"n{i}") for i in range(5)]
    assert find_duplicates(nothing) == []


def test_match_new_pairs_new_with_existing_and_new_never_existing_with_existing(
    population: SyntheticPersons,
) -> None:
    existing, new = population.records[:1_900], population.records[1_900:]
    new_ids = {r.person_id for r in new}
    pairs = match_new(new, existing)
    assert pairs
    assert all(p.left_id in new_ids or p.right_id in new_ids for p in pairs)
    truth = {p for p in population.true_pairs() if p[0] in new_ids or p[1] in new_ids}
    found = pair_ids(pairs)
    assert len(found & truth) / len(found) >= 0.9
    assert len(found & truth) / len(truth) >= 0.8


def test_same_input_gives_the_same_output_and_leaves_no_files(
    population: SyntheticPersons,
    deduped: list[CandidatePair],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work, spills = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    spills.mkdir()
    monkeypatch.chdir(work)
    # A private temporary folder: other test runs on the machine make their own spills.
    monkeypatch.setattr(tempfile, "tempdir", str(spills))
    assert find_duplicates([*population.records, *STRANGERS]) == deduped
    assert list(work.iterdir()) == []
    assert list(spills.iterdir()) == []


def test_emails_made_of_the_names_do_not_mislead_the_model(population: SyntheticPersons) -> None:
    """Every email is first.last@domain, so the email agrees whenever the names do: the
    correlation that sends EM wrong when the local part is counted as separate evidence."""
    correlated = [
        dataclasses.replace(
            r,
            email=f"{r.first_name}.{r.last_name}@{r.email.split('@')[1]}".lower()
            if r.email and r.first_name and r.last_name
            else r.email,
        )
        for r in population.records[:1_200]
    ]
    found = pair_ids(find_duplicates(correlated))
    truth = population.true_pairs([r.person_id for r in correlated])
    assert len(found & truth) / len(found) >= 0.9
    assert len(found & truth) / len(truth) >= 0.8
