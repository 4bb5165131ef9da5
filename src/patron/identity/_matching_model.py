"""The Fellegi-Sunter model behind :mod:`patron.identity.matching`: columns, levels, defaults.

Every comparison level carries a default m and u probability. They are what the model
uses when the data cannot estimate a parameter (too few records, no pairs in a training
block, EM that did not converge or converged to nonsense), so that small inputs still
give sensible pairs. They were set by hand from what these fields do in customer data: m
is how often two records of the same person fall into the level, u how often two records
of different persons do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The normalised columns every comparison and blocking rule reads (see _PREPARE_SQL).
PREPARED_COLUMNS = (
    "first_name",
    "last_name",
    "first_initial",
    "email",
    "email_local",
    "email_handle",
    "phone",
    "phone_tail",
    "birth_date",
    "birth_year",
    "birth_month",
    "birth_day",
    "street",
    "city",
    "postcode",
    "postcode_area",
)


@dataclass(frozen=True)
class Level:
    label: str
    sql: str
    m: float
    u: float
    tf_column: str | None = None
    # Neither EM nor u sampling may move it: m = u makes the level neutral (weight 0).
    fixed: bool = False


@dataclass(frozen=True)
class Comparison:
    """One compared field: its null condition, then its levels from strongest to else."""

    field: str
    null_sql: str
    levels: tuple[Level, ...]

    def label_of(self, gamma: int) -> str:
        """Splink numbers the levels from len-1 (strongest) down to 0 (else); null is -1."""
        if gamma < 0:
            return "null"
        return self.levels[len(self.levels) - 1 - gamma].label


def _null(*columns: str) -> str:
    return " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in columns)


def _jw(column: str, threshold: float) -> str:
    return f"jaro_winkler_similarity({column}_l, {column}_r) >= {threshold}"


def _name(field: str, other: str, *, counts_swap: bool) -> Comparison:
    swapped = f"{field}_l = {other}_r AND {other}_l = {field}_r"
    return Comparison(
        field=field,
        null_sql=_null(field),
        levels=(
            Level("exact", f"{field}_l = {field}_r", 0.85, 0.01, tf_column=field),
            # First and last name entered the other way round. Counted once, under the
            # first name (the last name's level is neutral), and with fixed parameters:
            # random sampling puts its u near zero and both names' frequencies would
            # be needed to correct it, so learnt it would outweigh an exact full name
            # ("Smith Donald" for any Donald Smith). Here it is worth about as much as
            # one exact common name, less than both names agreeing in place.
            Level("swapped", swapped, 0.04, 0.0005, fixed=True)
            if counts_swap
            else Level("swapped (counted under the first name)", swapped, 0.04, 0.04, fixed=True),
            Level("jaro-winkler >= 0.92", _jw(field, 0.92), 0.06, 0.005),
            Level("jaro-winkler >= 0.80", _jw(field, 0.80), 0.03, 0.04),
            Level("else", "ELSE", 0.02, 0.945),
        ),
    )


COMPARISONS: tuple[Comparison, ...] = (
    _name("first_name", "last_name", counts_swap=True),
    _name("last_name", "first_name", counts_swap=False),
    Comparison(
        field="email",
        null_sql=_null("email"),
        levels=(
            Level("exact", "email_l = email_r", 0.55, 0.0001),
            # A local part made of the names repeats the name comparisons; counting it
            # again is what sends EM wrong on correlated fields. Only the rest of the
            # local part (digits, initials, nicknames) is evidence of its own.
            Level(
                "same local part beyond the names",
                "email_local_l = email_local_r AND length(email_handle_l) >= 2",
                0.05,
                0.0005,
            ),
            Level(
                "local part is the names",
                "email_local_l = email_local_r AND email_handle_l IS NULL",
                0.05,
                0.05,
                fixed=True,
            ),
            Level(
                "similar local part beyond the names",
                "length(email_handle_l) >= 3 AND length(email_handle_r) >= 3 AND "
                + _jw("email_handle", 0.88),
                0.1,
                0.01,
            ),
            Level("else", "ELSE", 0.25, 0.9394),
        ),
    ),
    Comparison(
        field="phone",
        null_sql=_null("phone"),
        levels=(
            Level("exact", "phone_l = phone_r", 0.7, 0.0001),
            Level("same last 7 digits", "phone_tail_l = phone_tail_r", 0.1, 0.0002),
            Level("else", "ELSE", 0.2, 0.9997),
        ),
    ),
    Comparison(
        field="birth_date",
        null_sql=_null("birth_date"),
        levels=(
            Level("exact", "birth_date_l = birth_date_r", 0.92, 0.0001),
            Level(
                "one field off or day and month swapped",
                "(CAST(birth_year_l = birth_year_r AS INT)"
                " + CAST(birth_month_l = birth_month_r AS INT)"
                " + CAST(birth_day_l = birth_day_r AS INT)) = 2"
                " OR (birth_year_l = birth_year_r AND birth_month_l = birth_day_r"
                " AND birth_day_l = birth_month_r)",
                0.06,
                0.005,
            ),
            Level("else", "ELSE", 0.02, 0.9949),
        ),
    ),
    Comparison(
        field="postcode",
        null_sql=_null("postcode"),
        levels=(
            Level("exact", "postcode_l = postcode_r", 0.8, 0.0005),
            Level("same area", "postcode_area_l = postcode_area_r", 0.05, 0.01),
            Level("else", "ELSE", 0.15, 0.9895),
        ),
    ),
    Comparison(
        field="city",
        null_sql=_null("city"),
        levels=(
            Level("exact", "city_l = city_r", 0.85, 0.05, tf_column="city"),
            Level("jaro-winkler >= 0.90", _jw("city", 0.90), 0.03, 0.01),
            Level("else", "ELSE", 0.12, 0.94),
        ),
    ),
    Comparison(
        field="street",
        null_sql=_null("street"),
        levels=(
            Level("jaro-winkler >= 0.95", _jw("street", 0.95), 0.75, 0.0005),
            Level("jaro-winkler >= 0.85", _jw("street", 0.85), 0.08, 0.02),
            Level("else", "ELSE", 0.17, 0.9795),
        ),
    ),
)

# Candidate pairs: a pair is scored when any rule holds. Each keeps blocks small on
# customer data (an email, a phone, a birth date, a surname and initial, a postcode and
# initial are shared by few persons), so the comparisons grow near-linearly with the data.
PREDICTION_BLOCKING_RULES = (
    "l.email = r.email",
    "l.phone = r.phone",
    "l.first_name = r.first_name AND l.last_name = r.last_name",
    "l.last_name = r.last_name AND l.first_initial = r.first_initial"
    " AND l.birth_year = r.birth_year",
    "l.first_name = r.last_name AND l.last_name = r.first_name",
    "l.birth_date = r.birth_date",
    "l.postcode = r.postcode AND l.first_initial = r.first_initial",
)

# EM runs once per rule; a rule's own columns cannot be estimated from its pairs, so the
# two rules together cover every comparison: names from the birth date block, the rest
# from the name block.
TRAINING_BLOCKING_RULES = (
    "l.first_name = r.first_name AND l.last_name = r.last_name",
    "l.birth_date = r.birth_date",
)

# Rules that admit almost no false positives, for estimating the prior (the probability
# that two random records match); RECALL is how many true pairs we expect them to find.
DETERMINISTIC_RULES = (
    "l.email = r.email AND l.first_name = r.first_name",
    "l.phone = r.phone AND l.first_name = r.first_name",
    "l.first_name = r.first_name AND l.last_name = r.last_name AND l.birth_date = r.birth_date",
)
DETERMINISTIC_RECALL = 0.7

# Used when the prior cannot be estimated: about one duplicate per thousand persons.
DEFAULT_PRIOR_PER_RECORD = 0.001


def settings_dict(prior: float, *, term_frequencies: bool = True) -> dict[str, Any]:
    """A Splink settings dictionary for the model with the given prior and parameters."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": prior,
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": True,
        "max_iterations": 20,
        "em_convergence": 0.001,
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": rule} for rule in PREDICTION_BLOCKING_RULES
        ],
        "comparisons": [_comparison_dict(c, term_frequencies) for c in COMPARISONS],
    }


def _comparison_dict(comparison: Comparison, term_frequencies: bool) -> dict[str, Any]:
    levels: list[dict[str, Any]] = [
        {"sql_condition": comparison.null_sql, "label_for_charts": "null", "is_null_level": True}
    ]
    for level in comparison.levels:
        entry: dict[str, Any] = {
            "sql_condition": level.sql,
            "label_for_charts": level.label,
            "m_probability": level.m,
            "u_probability": level.u,
        }
        if level.fixed:
            entry["fix_m_probability"] = entry["fix_u_probability"] = True
        if level.tf_column is not None and term_frequencies:
            entry["tf_adjustment_column"] = level.tf_column
            entry["tf_adjustment_weight"] = 1.0
        levels.append(entry)
    return {
        "output_column_name": comparison.field,
        "comparison_levels": levels,
    }
