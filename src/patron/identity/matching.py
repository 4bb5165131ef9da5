"""Probabilistic record linkage: likely duplicate persons that share no identifier.

A Fellegi-Sunter model (Splink on an in-memory DuckDB) compares first and last name, email,
phone, birth date and address (see ``_matching_model`` for the levels), and learns its
parameters from the records themselves, without labels:

- u probabilities (how often unrelated persons agree by chance) from a seeded random
  sample of pairs; a swapped name's u, which sampling almost never meets, is derived from
  the names' own;
- m probabilities (how often records of the same person agree) by expectation
  maximisation over pairs blocked on the full name and on the birth date;
- the prior (the probability that two random records are the same person) from the pairs
  a full-name-and-birth-date rule finds, divided by the recall the trained model gives
  that rule (a guessed recall would make every probability too low or too high);
- term-frequency adjustments on first name, last name and town, so that two "Smith"s
  count for less than two "Quennell"s.

Where the data cannot estimate a parameter the model keeps hand-set defaults. A trained
comparison whose strongest level does not count *for* a match, whose else level counts
for one, or (for names and birth date, which a person keeps) whose matches disagree more
often than they agree, is EM gone wrong (small data, a handful of names, or fields so
correlated that EM explains one with the other) and falls back to its defaults. No level
may count against a pair more than total disagreement does.

The engine is pure: records in, scored pairs with per-field evidence out. Nothing is
written to disk and the DuckDB connection is closed before returning.
"""

from __future__ import annotations

import gc
import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from patron.identity._matching_model import (
    COMPARISONS,
    DEFAULT_PRIOR_PER_RECORD,
    DETERMINISTIC_COLUMNS,
    DETERMINISTIC_RECALL,
    DETERMINISTIC_RULE,
    GIVEN_NAME_ROWS,
    TRAINING_BLOCKING_RULES,
    Comparison,
    derive_u,
    settings_dict,
)

DEFAULT_THRESHOLD = 0.5
# What DuckDB may hold in memory while matching before it spills to disk. Its default is
# 80% of the machine's memory, and it kept about 3 GB at 1,000,000 records; capped at 1 GB
# the same run found the same pairs as fast (69 s against 72 s) with a peak of 2.3 GB for
# the whole process, benchmark data included.
MEMORY_LIMIT = "1GB"

# Splink warns for every comparison level the data cannot train ("not observed in
# dataset"); falling back to the defaults is the design here, and the warnings would
# fill the server's log at every run.
if TYPE_CHECKING:
    from splink import DuckDBAPI, Linker

# Splink, DuckDB and Arrow take over a second to import; only matching needs them, so they are
# imported when it runs, not whenever the CLI or the server starts.
logging.getLogger("splink").setLevel(logging.ERROR)

# Below this many records there are too few pairs for u sampling and EM to beat the
# defaults; the model is used as set by hand.
MIN_RECORDS_TO_TRAIN = 500
# Sampled pairs for u and blocked pairs for each EM run: enough for stable estimates of
# levels with u around 1e-4, small enough to train on 100,000 persons in seconds.
U_SAMPLE_PAIRS = 2_000_000
EM_MAX_PAIRS = 400_000
SEED = 42


@dataclass(frozen=True)
class MatchRecord:
    """One person as the matcher sees them; every field but the id may be missing."""

    person_id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: str | None = None
    street: str | None = None
    city: str | None = None
    postcode: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class FieldEvidence:
    """How one compared field voted: its comparison level and match weight (log2 of the
    Bayes factor, term-frequency adjustment included), and the normalised values."""

    field: str
    level: str
    match_weight: float
    left: str | None
    right: str | None


@dataclass(frozen=True)
class CandidatePair:
    """Two persons that are probably one. ``left_id < right_id``.

    ``match_weight`` is ``prior_match_weight`` plus the sum of the evidence weights.
    """

    left_id: str
    right_id: str
    match_probability: float
    match_weight: float
    prior_match_weight: float
    evidence: tuple[FieldEvidence, ...]


def find_duplicates(
    records: Sequence[MatchRecord], *, threshold: float = DEFAULT_THRESHOLD
) -> list[CandidatePair]:
    """Every likely duplicate pair within one set of persons, above ``threshold``."""
    _check_unique_ids(records)
    if len(records) < 2:
        return []
    with _session(records, new_ids=None) as (api, sdf):
        linker = _trained_linker(api, sdf, len(records))
        predictions = linker.inference.predict(
            threshold_match_probability=threshold, warning_mode="never"
        )
        return _read_pairs(api, predictions.physical_name, linker)


def match_new(
    new: Sequence[MatchRecord],
    existing: Sequence[MatchRecord],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[CandidatePair]:
    """Likely duplicates of the new persons, among the existing base and each other.

    Existing persons are never paired with each other. The model is trained on existing
    and new together: the base is what makes the estimates good (a batch of new persons
    is usually far too small to train on), and including the new records keeps the term
    frequencies and u probabilities true to the data being scored, with no trained model
    to store and keep in step with the base.
    """
    _check_unique_ids([*existing, *new])
    if not new or len(new) + len(existing) < 2:
        return []
    with _session([*existing, *new], new_ids={r.person_id for r in new}) as (api, sdf):
        linker = _trained_linker(api, sdf, len(new) + len(existing))
        api.duckdb_con.execute(
            "CREATE TABLE new_persons AS SELECT * FROM persons WHERE is_new;"
            "CREATE TABLE old_persons AS SELECT * FROM persons WHERE NOT is_new"
        )
        new_sdf = api.register("new_persons", table_name="new_input")
        old_sdf = api.register("old_persons", table_name="old_input")
        for column in ("first_name", "last_name", "city"):
            linker.table_management.compute_tf_table(column)
        pairs: list[CandidatePair] = []
        if len(new) > 1:
            within = linker.inference.predict_within(
                new_sdf, threshold_match_probability=threshold, warning_mode="never"
            )
            pairs += _read_pairs(api, within.physical_name, linker)
        if existing:
            between = linker.inference.predict_between(
                old_sdf, new_sdf, threshold_match_probability=threshold, warning_mode="never"
            )
            pairs += _read_pairs(api, between.physical_name, linker)
        return sorted(pairs, key=lambda p: (p.left_id, p.right_id))


def _check_unique_ids(records: Sequence[MatchRecord]) -> None:
    ids = [r.person_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("person_id must be unique across the records given to the matcher")


# Normalisation in SQL, so 100,000 records cost one DuckDB statement, not a Python loop:
# names and cities lower-cased without accents or punctuation; emails lower-cased, local
# part without a +tag; phones to digits (E.164 arrives with +, others with spaces);
# postcodes upper-case without spaces; birth dates parsed, a bad one treated as missing.
_PREPARE_SQL = """
CREATE TABLE persons AS
WITH clean AS (
    SELECT
        person_id AS unique_id,
        is_new,
        NULLIF(trim(regexp_replace(strip_accents(lower(first_name)), '[^a-z ]', '', 'g')), '')
            AS first_name,
        NULLIF(trim(regexp_replace(strip_accents(lower(last_name)), '[^a-z ]', '', 'g')), '')
            AS last_name,
        NULLIF(lower(trim(email)), '') AS email,
        NULLIF(split_part(split_part(lower(trim(email)), '@', 1), '+', 1), '') AS email_local,
        NULLIF(regexp_replace(phone, '[^0-9]', '', 'g'), '') AS phone,
        TRY_CAST(birth_date AS DATE) AS birth_date,
        NULLIF(trim(regexp_replace(strip_accents(lower(street)), '[^a-z0-9 ]', '', 'g')), '')
            AS street,
        NULLIF(trim(regexp_replace(strip_accents(lower(city)), '[^a-z ]', '', 'g')), '')
            AS city,
        NULLIF(regexp_replace(upper(postcode), '[^A-Z0-9]', '', 'g'), '') AS postcode
    FROM raw_persons
),
variants AS (SELECT name, list(grp ORDER BY grp) AS groups FROM given_names GROUP BY name)
SELECT
    unique_id, is_new, first_name, last_name,
    left(first_name, 1) AS first_initial,
    (SELECT groups FROM variants WHERE name = first_name) AS first_name_groups,
    -- For a given name entered as the surname (Medina Tony for Anthony Medina).
    (SELECT groups FROM variants WHERE name = last_name) AS last_name_groups,
    email,
    email_local,
    -- What the local part says beyond the names (jclark17 -> j17, john.kelly -> nothing).
    NULLIF(replace(replace(regexp_replace(email_local, '[^a-z0-9]', '', 'g'),
        coalesce(replace(first_name, ' ', ''), '#'), ''),
        coalesce(replace(last_name, ' ', ''), '#'), ''), '') AS email_handle,
    phone,
    CASE WHEN length(phone) >= 7 THEN right(phone, 7) END AS phone_tail,
    CAST(birth_date AS VARCHAR) AS birth_date,
    year(birth_date) AS birth_year,
    month(birth_date) AS birth_month,
    day(birth_date) AS birth_day,
    street,
    NULLIF(regexp_extract(street, '[0-9]+'), '') AS street_number,
    city, postcode,
    CASE WHEN length(postcode) >= 5 THEN left(postcode, length(postcode) - 3) END
        AS postcode_area
FROM clean
ORDER BY unique_id
"""


@contextmanager
def _session(
    records: Sequence[MatchRecord], new_ids: set[str] | None
) -> Iterator[tuple[DuckDBAPI, Any]]:
    """An in-memory DuckDB holding the prepared ``persons`` table, closed afterwards."""
    import duckdb
    import pyarrow as pa
    from splink import DuckDBAPI

    table = pa.table(
        {
            **{
                f.name: pa.array(list(map(attrgetter(f.name), records)), type=pa.string())
                for f in fields(MatchRecord)
            },
            "is_new": pa.array(
                [new_ids is not None and r.person_id in new_ids for r in records],
                type=pa.bool_(),
            ),
        }
    )
    # In memory up to MEMORY_LIMIT, past which DuckDB spills to disk, into a directory
    # removed on exit rather than its default ``.tmp`` in the working directory.
    spill = tempfile.TemporaryDirectory(prefix="patron-match-")
    con = duckdb.connect(
        ":memory:", config={"temp_directory": spill.name, "memory_limit": MEMORY_LIMIT}
    )
    try:
        con.register("raw_persons", table)
        given, lines = zip(*GIVEN_NAME_ROWS, strict=True)
        con.register(
            "given_names",
            pa.table({"name": pa.array(given, pa.string()), "grp": pa.array(lines, pa.int32())}),
        )
        con.execute(_PREPARE_SQL)
        con.unregister("raw_persons")
        con.unregister("given_names")
        api = DuckDBAPI(con)
        yield api, api.register("persons", table_name="persons_input")
    finally:
        con.close()
        spill.cleanup()


def _trained_linker(api: DuckDBAPI, sdf: Any, n_records: int) -> Linker:
    """A linker whose parameters are learnt from ``sdf``, or the defaults where they cannot be."""
    import duckdb
    from splink import Linker
    from splink.internals.exceptions import SplinkException

    prior = _default_prior(n_records)
    if n_records < MIN_RECORDS_TO_TRAIN:
        # Term frequencies from a handful of records would call every name common.
        return Linker(sdf, settings_dict(prior, term_frequencies=False), log_level=None)
    trainer = Linker(sdf, settings_dict(prior), log_level=None)
    estimated = _estimate_prior(trainer)
    prior = estimated or prior
    try:
        trainer.training.estimate_u_using_random_sampling(
            max_pairs=U_SAMPLE_PAIRS, seed=SEED, min_count_per_level=None, num_chunks=1
        )
        for rule in TRAINING_BLOCKING_RULES:
            trainer.training.estimate_parameters_using_expectation_maximisation(
                rule, max_pairs=EM_MAX_PAIRS
            )
    except (SplinkException, ValueError, ZeroDivisionError, duckdb.Error):
        # Training gave up part way; whatever it estimated before is kept, the rest
        # stays at the defaults, and the sanity check below catches half-trained nonsense.
        pass
    model = _sanitised(trainer.misc.save_model_to_json(), prior)
    recall = _rule_recall(api, model)
    if estimated and recall:
        # The pairs the rule found, divided by the recall the model now says it has.
        model["probability_two_random_records_match"] = min(
            0.5, estimated * DETERMINISTIC_RECALL / recall
        )
    return Linker(sdf, model, log_level=None)


def _default_prior(n_records: int) -> float:
    pairs = n_records * (n_records - 1) / 2
    return min(0.5, DEFAULT_PRIOR_PER_RECORD * n_records / max(pairs, 1))


def _estimate_prior(linker: Linker) -> float | None:
    """The prior from the deterministic rule at its assumed recall; None if it cannot say."""
    from splink.internals.exceptions import SplinkException

    try:
        linker.training.estimate_probability_two_random_records_match(
            [DETERMINISTIC_RULE], recall=DETERMINISTIC_RECALL
        )
    except (SplinkException, ValueError):
        # The rule found more pairs than the assumed recall allows: a tiny or odd input.
        return None
    estimated = float(linker._settings_obj._probability_two_random_records_match)
    # No deterministic pair at all says little about the prior of a small input.
    return estimated if 0 < estimated < 1 else None


# Below this the recall the model gives is not believed (a column nearly always missing,
# or EM gone wrong), and the assumed one stays.
MIN_RULE_RECALL = 0.05


def _rule_recall(api: DuckDBAPI, model: dict[str, Any]) -> float | None:
    """The share of true pairs the deterministic rule finds, by the trained model."""
    counts = ", ".join(f"count({c})" for c in DETERMINISTIC_COLUMNS)
    # The columns are constants of the model, never input: no injection.
    (present,) = api.duckdb_con.execute(f"SELECT count(*), {counts} FROM persons").fetchall()  # noqa: S608
    if not present[0]:
        return None
    exact_m = {
        c["output_column_name"]: c["comparison_levels"][1].get("m_probability")
        for c in model["comparisons"]
    }
    recall = 1.0
    for column, count in zip(DETERMINISTIC_COLUMNS, present[1:], strict=True):
        m = exact_m.get(column)
        if not _probability(m):
            return None
        recall *= (count / present[0]) ** 2 * m
    return recall if recall >= MIN_RULE_RECALL else None


def _sanitised(model: dict[str, Any], prior: float) -> dict[str, Any]:
    """The trained model with impossible or back-to-front comparisons reset to defaults.

    Comparisons are matched by name: an EM run that fails part way can leave a comparison
    out of the saved model altogether (seen when a training block has no pairs).
    """
    defaults = settings_dict(prior)
    trained = {c["output_column_name"]: c for c in model["comparisons"]}
    comparisons = []
    for default, spec in zip(defaults["comparisons"], COMPARISONS, strict=True):
        comparison = trained.get(default["output_column_name"])
        if comparison is None or not _plausible(
            comparison["comparison_levels"], stable=spec.stable
        ):
            comparisons.append(default)
            continue
        for level, default_level in zip(
            comparison["comparison_levels"], default["comparison_levels"], strict=True
        ):
            for key in ("m_probability", "u_probability"):
                if key in default_level and not _probability(level.get(key)):
                    level[key] = default_level[key]
        _no_worse_than_else(comparison["comparison_levels"])
        comparisons.append(comparison)
    return {
        **model,
        "comparisons": derive_u(comparisons),
        "probability_two_random_records_match": prior,
    }


def _no_worse_than_else(levels: list[dict[str, Any]]) -> None:
    """Raise the m of any level that counts against a match more than the else level does.

    Some agreement is never worse evidence than none: a level EM finds all but empty among
    matches (two-typo names where the data has only one-typo ones) would otherwise weigh
    -20 bits or more against a pair for being *nearly* alike.
    """
    scored = [lv for lv in levels if not lv.get("is_null_level")]
    floor = scored[-1]["m_probability"] / scored[-1]["u_probability"]
    for level in scored[:-1]:
        if level["m_probability"] < level["u_probability"] * floor:
            level["m_probability"] = level["u_probability"] * floor


def _probability(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 1


# How far the else level's m may exceed its u and still count as neutral rather than for a
# match (log2(1.05): 0.07 bits). Persons who share an email or phone are linked by the
# identity graph before matching, so among the persons left, records of one person almost
# always differ in both: their else level is rightly near 1 in m and in u.
ELSE_NEUTRAL_RATIO = 1.05


def _plausible(levels: list[dict[str, Any]], *, stable: bool) -> bool:
    """Agreement on the strongest level must count for a match, and the else level must not
    (against, or neutral). For a value a person keeps (``stable``), records of one person
    must also agree on it more often than not agree at all."""
    scored = [lv for lv in levels if not lv.get("is_null_level")]
    first, last = scored[0], scored[-1]
    keys = ("m_probability", "u_probability")
    if not all(_probability(lv.get(k)) for lv in (first, last) for k in keys):
        return False
    if stable and first["m_probability"] < last["m_probability"]:
        return False
    return bool(
        first["m_probability"] > first["u_probability"]
        and last["m_probability"] <= last["u_probability"] * ELSE_NEUTRAL_RATIO
    )


def _read_pairs(api: DuckDBAPI, table: str, linker: Linker) -> list[CandidatePair]:
    """The scored pairs as ``CandidatePair``s, the lower id on the left.

    Rounding, text and the left/right order are done in SQL: at a million records there
    are hundreds of thousands of pairs, and Python would take seconds over each step.
    """
    prior = float(linker._settings_obj._probability_two_random_records_match)
    prior_weight = round(math.log2(prior / (1 - prior)), 9)
    con = api.duckdb_con
    # ``table`` is a name Splink generated, never input: no injection.
    present = {d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description}  # noqa: S608
    swap = "unique_id_l > unique_id_r"
    columns = [
        "least(unique_id_l, unique_id_r)",
        "greatest(unique_id_l, unique_id_r)",
        "round(match_probability, 9)",
        "round(match_weight, 9)",
    ]
    for c in COMPARISONS:
        tf_column = f"mw_tf_adj_{c.field}"
        tf = tf_column if tf_column in present else "0"
        left, right = _shown(c, "l"), _shown(c, "r")
        columns += [
            f"gamma_{c.field}",
            f"CAST(CASE WHEN {swap} THEN {right} ELSE {left} END AS VARCHAR)",
            f"CAST(CASE WHEN {swap} THEN {left} ELSE {right} END AS VARCHAR)",
            f"round(mw_{c.field} + {tf}, 9)",
        ]
    sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2"  # noqa: S608
    labels = [(c.field, _labels(c)) for c in COMPARISONS]
    rows = con.execute(sql).fetchall()
    pairs = []
    # Millions of small objects that live on: the cyclic collector would walk the growing
    # heap again and again (seconds at a million records) and find nothing to free.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for row in rows:
            evidence = tuple(
                FieldEvidence(field, by_gamma[gamma], weight, left, right)
                for (field, by_gamma), (gamma, left, right, weight) in zip(
                    labels, _chunks(row[4:]), strict=True
                )
            )
            pairs.append(CandidatePair(row[0], row[1], row[2], row[3], prior_weight, evidence))
    finally:
        if collecting:
            gc.enable()
    return pairs


def _chunks(values: tuple[Any, ...]) -> Iterator[tuple[Any, Any, Any, Any]]:
    for i in range(0, len(values), 4):
        yield values[i], values[i + 1], values[i + 2], values[i + 3]


def _labels(comparison: Comparison) -> dict[int, str]:
    """Level label by Splink's gamma value (-1 for null)."""
    return {gamma: comparison.label_of(gamma) for gamma in range(-1, len(comparison.levels))}


def _shown(comparison: Comparison, side: str) -> str:
    """The SQL of the value the evidence shows for one side of a comparison."""
    if not comparison.shown:
        return f"{comparison.field}_{side}"
    parts = ", ".join(f"{column}_{side}" for column in comparison.shown)
    return f"NULLIF(concat_ws(', ', {parts}), '')"
