"""The Fellegi-Sunter model behind :mod:`patron.identity.matching`: columns, levels, defaults.

Every comparison level carries a default m and u probability. They are what the model
uses when the data cannot estimate a parameter (too few records, no pairs in a training
block, EM that did not converge or converged to nonsense), so that small inputs still
give sensible pairs. They were set by hand from what these fields do in customer data: m
is how often two records of the same person fall into the level, u how often two records
of different persons do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The normalised columns every comparison and blocking rule reads (see _PREPARE_SQL).
PREPARED_COLUMNS = (
    "first_name",
    "last_name",
    "first_initial",
    "first_name_groups",
    "last_name_groups",
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
    "street_number",
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
    # u is not sampled but derived after training from other levels' u: the product over
    # the (comparison, levels) given of the sum of those levels' u. EM still learns m.
    u_from: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Comparison:
    """One compared field: its null condition, then its levels from strongest to else."""

    field: str
    null_sql: str
    levels: tuple[Level, ...]
    # The columns whose values the evidence shows, joined; by default the field's own.
    shown: tuple[str, ...] = ()
    # A value a person keeps for life (names, birth date, unlike an address or an email):
    # EM that finds a person's records disagreeing on it more often than agreeing has
    # latched onto something else (with a handful of names, a block of namesakes) and
    # the defaults are used instead.
    stable: bool = False

    def label_of(self, gamma: int) -> str:
        """Splink numbers the levels from len-1 (strongest) down to 0 (else); null is -1."""
        if gamma < 0:
            return "null"
        return self.levels[len(self.levels) - 1 - gamma].label


def _null(*columns: str) -> str:
    return " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in columns)


def _none_in_common(columns: tuple[str, ...]) -> str:
    """No column is present on both sides."""
    return " AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)" for c in columns)


_ADDRESS = ("street", "city", "postcode")

_ONE_FIELD_OFF = (
    "(CAST(birth_year_l = birth_year_r AS INT)"
    " + CAST(birth_month_l = birth_month_r AS INT)"
    " + CAST(birth_day_l = birth_day_r AS INT)) = 2"
)

# The same house: its number exactly (12 and 112 High Street are neighbours, not one
# address, though their spellings are close), the rest allowing a typo.
SAME_STREET = (
    "coalesce(street_number_l, '') = coalesce(street_number_r, '')"
    " AND jaro_winkler_similarity(street_l, street_r) >= 0.9"
)


def _jw(column: str, threshold: float) -> str:
    return f"jaro_winkler_similarity({column}_l, {column}_r) >= {threshold}"


# Given names and their common English short forms and spellings: each line a full name,
# then its other spellings and its nicknames. A name that begins a line belongs to that line
# only; any other name to every line it is on (Chris: Christopher, Christine, Christina).
# Two first names agree at the "nickname or variant" level when they share a line, so Bill
# meets William, and Chris meets Christine, but Christine never meets Christina: two full
# names are two names. Written for this module from general knowledge of English naming;
# extend it for the languages of your customers.
GIVEN_NAME_VARIANTS = """
abigail abby abbie gail
albert al bert bertie
alexander alex alec sandy xander
alexandra alex alexa sandra sandy sasha lexi
alfred alf alfie fred
alice allie ali
amanda mandy manda
andrew andy drew
ann anne annie nan
anna annie
anthony antony tony ant
arthur art artie
barbara barb babs barbie
benjamin ben benny benji
bernard bernie barney
beverly beverley bev
bradley brad
bridget biddy bridie
caroline carrie caro
carolyn carrie lyn
catherine katherine kathryn katharine cathy kathy kate katie kat kitty
charles charlie chuck chas chaz
charlotte lottie charlie
christian chris
christina chris tina chrissy kristina
christine chris tina chrissy kristine
christopher chris kit topher
clifford cliff
cynthia cindy
daniel dan danny
danielle dani
david dave davy davey
deborah debra debbie deb debby
dennis denny
diana diane dianne di
donald don donny
dorothy dot dottie dolly
douglas doug
edward ed eddie ted teddy ned
eleanor elinor ellie nell nora
elizabeth elisabeth liz lizzie beth betty bess bessie eliza elsie libby
emily em emmy
eugene gene
evelyn evie
frances fran fanny frankie
francis frank frankie
frederick fred freddie freddy
gabriel gabe
gerald gerry jerry
geoffrey jeffrey geoff jeff
gregory greg
harold harry hal
helen nell nellie
henry harry hank hal
isabella isabel isobel izzy bella
jacob jake
jacqueline jackie jacqui
james jim jimmy jamie
jane janie
jennifer jen jenny jenn
jeremy jerry jez
jessica jess jessie
joan joanie
joanne joanna jo
john jack johnny jon
jonathan jon jonny
joseph joe joey
josephine jo josie
joshua josh
judith judy jude
kathleen kathy kath
kenneth ken kenny
kimberly kimberley kim
lawrence laurence larry laurie
leonard len lenny
louis lewis lou louie
margaret maggie meg peggy marge margie madge
martha mattie
martin marty
mary molly polly mae
matthew mathew matt matty
melissa mel missy
michael mike mikey mick micky mickey
nathan nate nat
nathaniel nate nat
nicholas nick nicky
nicole nicky nikki
oliver ollie
olivia liv livvy
pamela pam
patricia pat patty patsy trish tricia
patrick pat paddy
peter pete
philip phillip phil pip
raymond ray
rebecca becky becca
richard dick rick ricky rich richie
robert bob bobby rob robbie
ronald ron ronnie
samantha sam sammy
samuel sam sammy
sandra sandy
sarah sara sally sadie
sophia sophie
stephanie steph
stephen steven steve stevie
susan sue susie suzy
terence terrence terry
teresa theresa terry tess tessa
thomas tom tommy
timothy tim timmy
victoria vicky vicki vic tori
vincent vince vinny
virginia ginny
walter walt wally
william bill billy will willy liam
zachary zach zack
"""


def _variant_rows() -> list[tuple[str, int]]:
    """(name, line) for every name and line it belongs to (see GIVEN_NAME_VARIANTS)."""
    lines = [line.split() for line in GIVEN_NAME_VARIANTS.strip().splitlines()]
    heads: dict[str, int] = {}
    for index, names in enumerate(lines):
        heads.setdefault(names[0], index)
    rows: list[tuple[str, int]] = []
    for index, names in enumerate(lines):
        for position, name in enumerate(names):
            if position == 0 or name not in heads:
                rows.append((name, index))
    return rows


GIVEN_NAME_ROWS = tuple(_variant_rows())


def _typo(column: str) -> str:
    """One letter left out, added, changed, or two neighbours swapped (Damerau's four).

    Damerau-Levenshtein is ten times slower in DuckDB than Jaro-Winkler, which is at least
    0.7 for any two names one such typo apart, so the cheap test goes first and spares the
    costly one for most pairs (DuckDB evaluates AND left to right on the rows still true).
    """
    return f"{_jw(column, 0.7)} AND damerau_levenshtein({column}_l, {column}_r) <= 1"


# Each side's first name is the other's last name. Both conditions exclude a first name
# that agrees in place, so the last name's neutral level holds exactly when the first
# name's comparison chose a swapped level (William Williams and William Wiliams are a
# typo in the surname, not a swap).
SWAPPED = (
    "first_name_l <> first_name_r AND first_name_l = last_name_r AND last_name_l = first_name_r"
)
SWAPPED_WITH_TYPO = (
    "(jaro_winkler_similarity(first_name_l, last_name_r) >= 0.88"
    " OR list_has_any(first_name_groups_l, last_name_groups_r))"
    " AND (jaro_winkler_similarity(last_name_l, first_name_r) >= 0.88"
    " OR list_has_any(last_name_groups_l, first_name_groups_r))"
    " AND jaro_winkler_similarity(first_name_l, first_name_r) < 0.88"
)


_CLOSE = ("exact", "one typo", "jaro-winkler >= 0.92")

# First and last name entered the other way round are counted once, under the first name
# (the last name's level is neutral). Random sampling almost never meets a swapped pair, so
# its u is derived instead: a chance swap (A's first name is B's last and A's last is B's
# first) is no likelier than both names agreeing in place, u(first exact) x u(last exact)
# (Cauchy-Schwarz, names drawn independently), so the swap counts for at most what an
# exact full name of average frequency does, less the rarity of the slip itself (m).
# Common names that are also surnames (Thomas James) are why it is not counted for more.
FIRST_NAME = Comparison(
    field="first_name",
    null_sql=_null("first_name"),
    stable=True,
    levels=(
        Level("exact", "first_name_l = first_name_r", 0.85, 0.01, tf_column="first_name"),
        Level(
            "swapped",
            SWAPPED,
            0.04,
            0.0005,
            u_from=(("first_name", ("exact",)), ("last_name", ("exact",))),
        ),
        Level(
            "swapped, with a typo or nickname",
            SWAPPED_WITH_TYPO,
            0.02,
            0.0005,
            u_from=(("first_name", (*_CLOSE, "nickname or variant")), ("last_name", _CLOSE)),
        ),
        # Bill and William, Peggy and Margaret: see GIVEN_NAME_VARIANTS.
        Level(
            "nickname or variant",
            "list_has_any(first_name_groups_l, first_name_groups_r)",
            0.04,
            0.001,
        ),
        Level("one typo", _typo("first_name"), 0.05, 0.002),
        Level("jaro-winkler >= 0.92", _jw("first_name", 0.92), 0.03, 0.003),
        Level("jaro-winkler >= 0.80", _jw("first_name", 0.80), 0.03, 0.04),
        Level("else", "ELSE", 0.02, 0.945),
    ),
)

LAST_NAME = Comparison(
    field="last_name",
    null_sql=_null("last_name"),
    stable=True,
    levels=(
        Level("exact", "last_name_l = last_name_r", 0.85, 0.01, tf_column="last_name"),
        Level(
            "swapped (counted under the first name)",
            f"({SWAPPED}) OR ({SWAPPED_WITH_TYPO})",
            0.04,
            0.04,
            fixed=True,
        ),
        Level("one typo", _typo("last_name"), 0.05, 0.002),
        Level("jaro-winkler >= 0.92", _jw("last_name", 0.92), 0.03, 0.003),
        Level("jaro-winkler >= 0.80", _jw("last_name", 0.80), 0.03, 0.04),
        Level("else", "ELSE", 0.02, 0.945),
    ),
)


COMPARISONS: tuple[Comparison, ...] = (
    FIRST_NAME,
    LAST_NAME,
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
        stable=True,
        levels=(
            Level("exact", "birth_date_l = birth_date_r", 0.92, 0.0001),
            # Day and month in the other order (an American form, a European clerk): a
            # slip that random dates almost never make, so worth nearly an exact date.
            Level(
                "day and month swapped",
                "birth_year_l = birth_year_r AND birth_month_l = birth_day_r"
                " AND birth_day_l = birth_month_r",
                0.02,
                0.00002,
            ),
            # One digit mistyped or two neighbours transposed (1985 for 1958): always within
            # one field, so the cheap test of the next level goes first.
            Level(
                "one digit off",
                f"{_ONE_FIELD_OFF} AND damerau_levenshtein(birth_date_l, birth_date_r) <= 1",
                0.03,
                0.001,
            ),
            Level("one field off", _ONE_FIELD_OFF, 0.03, 0.005),
            Level("else", "ELSE", 0.02, 0.9939),
        ),
    ),
    # One comparison for the whole address: street, town and postcode change together when
    # a person moves, so scored apart they would count one move three times over (about
    # -10 bits where the move is worth -2.5), and the same address three times over too.
    Comparison(
        field="address",
        null_sql=_none_in_common(_ADDRESS),
        shown=_ADDRESS,
        levels=(
            Level(
                "same street and postcode",
                f"postcode_l = postcode_r AND {SAME_STREET}",
                0.5,
                0.00001,
            ),
            Level("same postcode", "postcode_l = postcode_r", 0.15, 0.0005),
            Level("same street and town", f"city_l = city_r AND {SAME_STREET}", 0.1, 0.0005),
            # A town alone says more when it is all the two records let us compare (a
            # sign-up form asks for the town only) than beside two different streets in it.
            Level(
                "same town, nothing finer to compare",
                f"city_l = city_r AND {_none_in_common(('street', 'postcode'))}",
                0.5,
                0.03,
                tf_column="city",
            ),
            Level("same town, elsewhere in it", "city_l = city_r", 0.05, 0.03, tf_column="city"),
            Level("same postcode area", "postcode_area_l = postcode_area_r", 0.02, 0.01),
            Level("else", "ELSE", 0.18, 0.96),
        ),
    ),
)

# Candidate pairs: a pair is scored when any rule holds. Each keeps blocks small on
# customer data (an email, a phone, a birth date, a surname and initial, a postcode and
# initial or surname, one house are shared by few persons), so the comparisons grow
# near-linearly with the data. The address rules find the pairs a typo in the first letter
# of a name, or a swap with a typo, keeps out of the name rules.
PREDICTION_BLOCKING_RULES = (
    "l.email = r.email",
    "l.phone = r.phone",
    "l.first_name = r.first_name AND l.last_name = r.last_name",
    "l.last_name = r.last_name AND l.first_initial = r.first_initial"
    " AND l.birth_year = r.birth_year",
    "l.first_name = r.last_name AND l.last_name = r.first_name",
    "l.birth_date = r.birth_date",
    "l.postcode = r.postcode AND l.first_initial = r.first_initial",
    "l.postcode = r.postcode AND l.last_name = r.last_name",
    # One address (house number and street in a town): the household, whatever the names.
    "l.street = r.street AND l.city = r.city",
)

# EM runs once per rule; a rule's own columns cannot be estimated from its pairs, so the
# two rules together cover every comparison: names from the birth date block, the rest
# from the name block.
TRAINING_BLOCKING_RULES = (
    "l.first_name = r.first_name AND l.last_name = r.last_name",
    "l.birth_date = r.birth_date",
)

# A rule that admits almost no false positives, for estimating the prior (the probability
# that two random records match) from the pairs it finds and its recall (the share of true
# pairs it finds). The recall is assumed before training and then taken from the trained
# model: the m of each column's exact level times the share of pairs where both records
# have the column (missing at random, as the model assumes when it scores a missing value
# as neutral). Email and phone rules would find nothing true here: the identity graph has
# already linked persons who share one, and those it kept apart (a family's shared
# email) are different people.
DETERMINISTIC_COLUMNS = ("first_name", "last_name", "birth_date")
DETERMINISTIC_RULE = " AND ".join(f"l.{c} = r.{c}" for c in DETERMINISTIC_COLUMNS)
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
        "comparisons": derive_u([_comparison_dict(c, term_frequencies) for c in COMPARISONS]),
    }


def derive_u(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set the u of every level that has ``u_from`` from the other levels' u (in place)."""
    u = {
        (c["output_column_name"], lv["label_for_charts"]): lv.get("u_probability")
        for c in comparisons
        for lv in c["comparison_levels"]
    }
    for comparison, spec in zip(comparisons, COMPARISONS, strict=True):
        for entry, level in zip(comparison["comparison_levels"][1:], spec.levels, strict=True):
            if level.u_from:
                entry["u_probability"] = (
                    math.prod(
                        sum(u[(field, label)] or 0.0 for label in labels)
                        for field, labels in level.u_from
                    )
                    or level.u
                )
    return comparisons


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
        elif level.u_from:
            entry["fix_u_probability"] = True
        if level.tf_column is not None and term_frequencies:
            entry["tf_adjustment_column"] = level.tf_column
            entry["tf_adjustment_weight"] = 1.0
        levels.append(entry)
    return {
        "output_column_name": comparison.field,
        "comparison_levels": levels,
    }
