"""What each comparison of the matching model makes of the ways one person's records differ,
and that the probabilities it gives are honest on data of known truth."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict

import pytest

from patron.identity._matching_model import COMPARISONS, GIVEN_NAME_ROWS, settings_dict
from patron.identity._matching_synthetic import SyntheticPersons, generate_persons
from patron.identity.matching import (
    CandidatePair,
    FieldEvidence,
    MatchRecord,
    _sanitised,
    find_duplicates,
)

ADA = MatchRecord(
    "a",
    first_name="Ada",
    last_name="Lovelace",
    birth_date="1815-12-10",
    street="12 Mill Lane",
    city="Ashford",
    postcode="TN24 8AB",
)


def evidence_of(left: MatchRecord, right: MatchRecord) -> dict[str, FieldEvidence]:
    """How the default model (two records are too few to train on) compares two records."""
    pairs = find_duplicates([left, right], threshold=0.0)
    assert len(pairs) == 1, "the two records were not even compared"
    return {e.field: e for e in pairs[0].evidence}


def like_ada(**changes: str | None) -> MatchRecord:
    return dataclasses.replace(ADA, person_id="b", **changes)


def test_a_move_is_one_disagreement_not_three() -> None:
    moved = like_ada(street="7 Harbour Row", city="Whitby", postcode="YO21 3PU")
    evidence = evidence_of(ADA, moved)
    assert [e.field for e in evidence.values()][-1] == "address"
    address = evidence["address"]
    assert address.level == "else"
    # A move costs what a move is worth (about -2.4 bits), not street, town and postcode
    # each disagreeing as though they were independent (about -10).
    assert -3.5 < address.match_weight < 0
    assert (address.left, address.right) == (
        "12 mill lane, ashford, TN248AB",
        "7 harbour row, whitby, YO213PU",
    )


def test_the_same_address_and_the_levels_below_it() -> None:
    same = evidence_of(ADA, like_ada(postcode="tn248ab"))["address"]
    assert same.level == "same street and postcode"
    typo = evidence_of(ADA, like_ada(street="12 Mill Lnae", postcode=None))["address"]
    assert typo.level == "same street and town"
    # 12 and 112 Mill Lane are neighbours: spelt alike, but not one house.
    neighbour = evidence_of(ADA, like_ada(street="112 Mill Lane", postcode=None))["address"]
    assert neighbour.level == "same town, elsewhere in it"
    town_only = evidence_of(ADA, like_ada(street=None, postcode=None))["address"]
    assert town_only.level == "same town, nothing finer to compare"
    assert town_only.match_weight > neighbour.match_weight
    assert same.match_weight > typo.match_weight > town_only.match_weight > 0
    missing = evidence_of(ADA, like_ada(street=None, city=None, postcode=None))["address"]
    assert (missing.level, missing.match_weight) == ("null", 0)


@pytest.mark.parametrize(
    ("one", "other", "level"),
    [
        ("William", "Bill", "nickname or variant"),
        ("Margaret", "Peggy", "nickname or variant"),
        ("Christine", "Chris", "nickname or variant"),
        ("Katherine", "Kathryn", "nickname or variant"),
        # Two full names are two names, however alike: no nickname between them.
        ("Christine", "Christina", "one typo"),
        ("Jonathan", "Jonahtan", "one typo"),
        ("Jonathan", "Jnoathan", "one typo"),
        ("Ada", "Ava", "one typo"),
    ],
)
def test_first_names_nicknames_and_typos(one: str, other: str, level: str) -> None:
    first = evidence_of(dataclasses.replace(ADA, first_name=one), like_ada(first_name=other))[
        "first_name"
    ]
    assert first.level == level
    assert first.match_weight > 0


def test_a_full_name_is_never_another_full_names_nickname() -> None:
    lines: dict[str, set[int]] = defaultdict(set)
    for name, line in GIVEN_NAME_ROWS:
        lines[name].add(line)
    heads = {name for name, found in lines.items() if len(found) == 1}
    assert lines["christine"].isdisjoint(lines["christina"])
    assert lines["william"] & lines["bill"]
    assert len(lines["chris"]) >= 3
    assert "jo-anne" not in lines
    assert all(name.isalpha() for name in lines)
    assert {"john", "james", "margaret", "elizabeth"} <= heads


NEUTRAL_SWAP = "swapped (counted under the first name)"
SWAP_TYPO = "swapped, with a typo or nickname"


@pytest.mark.parametrize(
    ("left", "right", "first_level", "last_level"),
    [
        # Entered the other way round: counted once, under the first name.
        (("Ada", "Lovelace"), ("Lovelace", "Ada"), "swapped", NEUTRAL_SWAP),
        (("Ada", "Lovelace"), ("Lovelaec", "Ada"), SWAP_TYPO, NEUTRAL_SWAP),
        # Names alike each other: a typo in the surname, not a swap.
        (("William", "Williams"), ("William", "Wiliams"), "exact", "one typo"),
    ],
)
def test_swapped_names(
    left: tuple[str, str], right: tuple[str, str], first_level: str, last_level: str
) -> None:
    evidence = evidence_of(
        like_ada(first_name=left[0], last_name=left[1]),
        dataclasses.replace(ADA, first_name=right[0], last_name=right[1]),
    )
    assert evidence["first_name"].level == first_level
    assert evidence["first_name"].match_weight > 0
    assert evidence["last_name"].level == last_level
    if last_level == NEUTRAL_SWAP:
        assert evidence["last_name"].match_weight == 0
    else:
        assert evidence["last_name"].match_weight > 0


def test_a_swapped_nickname() -> None:
    anthony = like_ada(first_name="Anthony", last_name="Medina")
    tony = dataclasses.replace(anthony, person_id="a", first_name="Medina", last_name="Tony")
    evidence = evidence_of(tony, anthony)
    assert evidence["first_name"].level == SWAP_TYPO
    assert evidence["last_name"].match_weight == 0


@pytest.mark.parametrize(
    ("other", "level"),
    [
        ("1815-10-12", "day and month swapped"),
        ("1815-12-11", "one digit off"),
        ("1851-12-10", "one digit off"),
        ("1815-12-27", "one field off"),
        ("1816-01-10", "else"),
    ],
)
def test_birth_dates(other: str, level: str) -> None:
    birth = evidence_of(ADA, like_ada(birth_date=other))["birth_date"]
    assert birth.level == level


def test_a_day_and_month_swap_counts_for_nearly_as_much_as_the_date() -> None:
    exact = evidence_of(ADA, like_ada())["birth_date"].match_weight
    swapped = evidence_of(ADA, like_ada(birth_date="1815-10-12"))["birth_date"].match_weight
    field_off = evidence_of(ADA, like_ada(birth_date="1815-12-27"))["birth_date"].match_weight
    assert exact > swapped > field_off > 0


def test_one_household_is_compared_whatever_the_names() -> None:
    """Records that share an address are candidates even when a typo hits the first
    letter of the first name, which the name blocks key on."""
    joan = like_ada(first_name="Joan", last_name="Ruiz", birth_date=None, postcode=None)
    ojan = dataclasses.replace(joan, person_id="a", first_name="Ojan")
    evidence = evidence_of(ojan, joan)
    assert evidence["first_name"].level == "one typo"
    assert evidence["address"].level == "same street and town"


# --- trained on data of known truth ---------------------------------------------------


@pytest.fixture(scope="module")
def population() -> SyntheticPersons:
    return generate_persons(2_000, seed=11)


@pytest.fixture(scope="module")
def scored(population: SyntheticPersons) -> list[CandidatePair]:
    """Every candidate pair, however unlikely."""
    return find_duplicates(population.records, threshold=0.0)


def test_the_prior_is_close_to_the_true_share_of_matching_pairs(
    population: SyntheticPersons, scored: list[CandidatePair]
) -> None:
    n = len(population.records)
    share = len(population.true_pairs()) / (n * (n - 1) / 2)
    assert abs(scored[0].prior_match_weight - math.log2(share / (1 - share))) < 0.5


def test_the_probabilities_add_up_to_the_true_pairs(
    population: SyntheticPersons, scored: list[CandidatePair]
) -> None:
    """Calibration: the expected number of true pairs among the candidates is the number
    there are, and no candidate the model is near certain of is wrong."""
    truth = population.true_pairs()
    true_candidates = sum((p.left_id, p.right_id) in truth for p in scored)
    expected = sum(p.match_probability for p in scored)
    assert abs(expected - true_candidates) / true_candidates < 0.05
    certain = [p for p in scored if p.match_probability >= 0.99]
    assert all((p.left_id, p.right_id) in truth for p in certain)


def test_no_level_counts_against_a_pair_more_than_disagreement_does(
    scored: list[CandidatePair],
) -> None:
    weights: dict[str, dict[str, float]] = defaultdict(dict)
    for pair in scored:
        for e in pair.evidence:
            if e.field not in ("first_name", "last_name"):  # term frequencies vary these
                weights[e.field][e.level] = e.match_weight
    for field, levels in weights.items():
        if "else" in levels:
            assert min(levels.values()) >= levels["else"] - 1e-9, field


def test_records_the_identity_graph_left_apart_still_match(population: SyntheticPersons) -> None:
    """After the identity graph, persons sharing an email or phone are already one, so a
    person's remaining records always differ in both: that is no evidence against them."""
    rng = random.Random(5)
    apart = [
        dataclasses.replace(
            r,
            email=f"{rng.getrandbits(64):x}@example.org" if r.email else None,
            phone=f"+4470{rng.randrange(10**8, 10**9)}" if r.phone else None,
        )
        for r in population.records
    ]
    pairs = find_duplicates(apart)
    truth = population.true_pairs()
    found = {(p.left_id, p.right_id) for p in pairs}
    assert len(found & truth) / len(found) >= 0.99
    assert len(found & truth) / len(truth) >= 0.9
    for pair in pairs:
        email = next(e for e in pair.evidence if e.field == "email")
        assert email.level in ("null", "else")
        assert abs(email.match_weight) < 0.1


def test_em_that_latched_onto_namesakes_is_not_believed() -> None:
    """With a handful of names (the demo shop's), EM on the full-name block can take the
    namesakes for the matches and conclude that one person's records mostly disagree on
    the birth date. A name or a birth date is kept for life: such a comparison falls back
    to its defaults. An email that always differs is believed: after the identity graph,
    that is what records of one person do."""
    trained = settings_dict(0.001)
    by_field = {c["output_column_name"]: c["comparison_levels"] for c in trained["comparisons"]}
    birth, email = by_field["birth_date"], by_field["email"]
    birth[1]["m_probability"], birth[-1]["m_probability"] = 0.2, 0.75
    email[-1]["m_probability"], email[-1]["u_probability"] = 0.999, 0.995
    sanitised = {
        c["output_column_name"]: c["comparison_levels"]
        for c in _sanitised(trained, 0.001)["comparisons"]
    }
    defaults = {c.field: c for c in COMPARISONS}
    assert sanitised["birth_date"][1]["m_probability"] == defaults["birth_date"].levels[0].m
    assert sanitised["birth_date"][-1]["m_probability"] == defaults["birth_date"].levels[-1].m
    assert sanitised["email"][-1]["m_probability"] == 0.999
