"""Labelled synthetic persons with realistic duplicates, for the matcher's tests and benchmark.

Each true person gets a clean record; some get one or two more records of the same person,
corrupted the way real CRM and sign-up data is: typos, nicknames, first and last name
swapped, emails in another case or another address altogether, phones and postcodes
formatted differently, people who moved, and fields left empty. The email's local part is
built from the names, as real addresses are, so the fields are correlated.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

from patron.identity.matching import MatchRecord

FIRST_NAMES = (  # noqa: SIM905 (word lists read best as text)
    "james john robert michael william david richard joseph thomas charles christopher "
    "daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian "
    "george timothy ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan "
    "stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick "
    "raymond jack dennis jerry tyler aaron jose adam nathan henry douglas zachary peter "
    "kyle noah ethan jeremy walter christian keith roger terry austin sean gerald carl "
    "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy "
    "betty margaret sandra ashley kimberly emily donna michelle carol amanda dorothy "
    "melissa deborah stephanie rebecca sharon laura cynthia kathleen amy angela shirley "
    "anna brenda pamela emma nicole helen samantha katherine christine debra rachel "
    "carolyn janet catherine maria heather diane ruth julie olivia joyce virginia "
    "victoria kelly lauren christina joan evelyn judith megan andrea cheryl hannah "
    "jacqueline martha gloria teresa ann sara madison frances kathryn janice jean abigail "
    "alice judy sophia grace denise amber doris marilyn danielle beverly isabella theresa "
    "diana natalie brittany charlotte marie kayla alexis lori"
).split()

LAST_NAMES = (  # noqa: SIM905 (word lists read best as text)
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
    "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
    "white harris sanchez clark ramirez lewis robinson walker young allen king wright "
    "scott torres nguyen hill flores green adams nelson baker hall rivera campbell "
    "mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins "
    "reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper "
    "peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez "
    "wood james bennett gray mendoza ruiz hughes price alvarez castillo sanders patel "
    "myers long ross foster jimenez powell jenkins perry russell sullivan bell coleman "
    "butler henderson barnes gonzales fisher vasquez simmons romero jordan patterson "
    "alexander hamilton graham reynolds griffin wallace moreno west cole hayes bryant "
    "herrera gibson ellis tran medina aguilar stevens murray ford castro marshall owens "
    "harrison fernandez mcdonald woods washington kennedy wells vargas henry chen freeman "
    "webb tucker guzman burns crawford olson simpson porter hunter gordon mendez silva "
    "shaw snyder mason dixon munoz hunt hicks holmes palmer wagner black robertson boyd "
    "rose stone salazar fox warren mills meyer rice schmidt garza daniels ferguson "
    "nichols stephens soto weaver ryan gardner payne grant dunn kelley spencer hawkins "
    "arnold pierce vazquez hansen peters santos hart bradley knight elliott cunningham "
    "duncan armstrong hudson carroll lane riley andrews alvarado ray delgado berry "
    "perkins hoffman johnston matthews pena richards contreras willis carpenter lawrence "
    "sandoval"
).split()

NICKNAMES = {
    "william": "bill",
    "robert": "bob",
    "richard": "dick",
    "james": "jim",
    "john": "jack",
    "michael": "mike",
    "thomas": "tom",
    "joseph": "joe",
    "christopher": "chris",
    "daniel": "dan",
    "matthew": "matt",
    "anthony": "tony",
    "elizabeth": "liz",
    "margaret": "maggie",
    "katherine": "kate",
    "jennifer": "jen",
    "patricia": "pat",
    "rebecca": "becky",
    "deborah": "debbie",
    "samantha": "sam",
    "alexander": "alex",
    "nicholas": "nick",
    "benjamin": "ben",
    "jonathan": "jon",
    "victoria": "vicky",
}

STREETS = (  # noqa: SIM905 (word lists read best as text)
    "high street|station road|main street|park road|church road|church street|"
    "london road|victoria road|green lane|manor road|church lane|park avenue|the avenue|"
    "queens road|new road|grange road|kings road|mill lane|school lane|north street|"
    "south street|west street|east street|springfield road|the crescent|albert road|"
    "york road|george street|windsor road|highfield road|richmond road|stanley road|"
    "chester road|mill road|the green|alexandra road|king street|queen street|broadway|"
    "beech grove"
).split("|")

CITIES = (  # noqa: SIM905 (word lists read best as text)
    "London Birmingham Manchester Leeds Glasgow Sheffield Bradford Liverpool Edinburgh "
    "Bristol Cardiff Leicester Coventry Nottingham Newcastle Belfast Brighton Hull "
    "Plymouth Stoke Wolverhampton Derby Swansea Southampton Salford Aberdeen Westminster "
    "Portsmouth York Peterborough Dundee Lancaster Oxford Newport Preston Cambridge "
    "Norwich Chester Exeter Bath Durham Inverness Lincoln Worcester Gloucester Carlisle"
).split()

EMAIL_DOMAINS = ("gmail.com", "yahoo.co.uk", "hotmail.com", "outlook.com", "icloud.com")


@dataclass(frozen=True)
class SyntheticPersons:
    """Records and the truth: ``entity_of`` maps each person id to the real person it is."""

    records: list[MatchRecord]
    entity_of: dict[str, int]

    def true_pairs(self, ids: Sequence[str] | None = None) -> set[tuple[str, str]]:
        """Every pair of records (lower id first) that are the same real person."""
        by_entity: dict[int, list[str]] = {}
        for person_id in ids if ids is not None else self.entity_of:
            by_entity.setdefault(self.entity_of[person_id], []).append(person_id)
        pairs: set[tuple[str, str]] = set()
        for members in by_entity.values():
            ordered = sorted(members)
            pairs.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
        return pairs


def _zipf_choice(rng: random.Random, values: Sequence[str]) -> str:
    """Common names are common: the first of 250 comes up about 2.5% of the time."""
    index = int(len(values) * rng.random() ** 1.5)
    return values[min(index, len(values) - 1)]


def _typo(rng: random.Random, value: str) -> str:
    if len(value) < 3:
        return value
    i = rng.randrange(1, len(value) - 1)
    kind = rng.random()
    if kind < 0.33:
        return value[:i] + value[i + 1 :]
    if kind < 0.66:
        return value[:i] + rng.choice(string.ascii_lowercase) + value[i + 1 :]
    return value[: i - 1] + value[i] + value[i - 1] + value[i + 1 :]


def _clean_person(rng: random.Random, entity: int, used_locals: set[str]) -> dict[str, str]:
    first = _zipf_choice(rng, FIRST_NAMES)
    last = _zipf_choice(rng, LAST_NAMES)
    city_index = rng.randrange(len(CITIES))
    area = "".join(rng.choices(string.ascii_uppercase, k=2))
    style = rng.random()
    local = (
        f"{first}.{last}"
        if style < 0.4
        else f"{first[0]}{last}{rng.randrange(1, 99)}"
        if style < 0.8
        else f"{first}{rng.randrange(1950, 2005)}"
    )
    while local in used_locals:
        local += str(rng.randrange(10))
    used_locals.add(local)
    return {
        "first_name": first.capitalize(),
        "last_name": last.capitalize(),
        "email": f"{local}@{rng.choice(EMAIL_DOMAINS)}",
        "phone": f"+447{rng.randrange(100_000_000, 999_999_999)}",
        "birth_date": f"{rng.randrange(1940, 2006)}-{rng.randrange(1, 13):02d}-"
        f"{rng.randrange(1, 29):02d}",
        "street": f"{rng.randrange(1, 200)} {rng.choice(STREETS).title()}",
        "city": CITIES[city_index],
        "postcode": f"{area}{city_index % 20 + 1} {rng.randrange(1, 10)}{area[::-1]}",
        "country": "GB",
        "_entity": str(entity),
    }


def _corrupt(rng: random.Random, clean: dict[str, str]) -> dict[str, str | None]:
    rec: dict[str, str | None] = dict(clean)
    first, last = clean["first_name"].lower(), clean["last_name"].lower()
    if rng.random() < 0.12:
        first = NICKNAMES.get(first, _typo(rng, first))
    if rng.random() < 0.12:
        last = _typo(rng, last)
    if rng.random() < 0.05:
        first, last = last, first
    rec["first_name"], rec["last_name"] = first.capitalize(), last.capitalize()
    if rng.random() < 0.3:
        rec["first_name"] = first.upper()
    roll = rng.random()
    if roll < 0.2:
        rec["email"] = f"{first}{rng.randrange(1, 999)}@{rng.choice(EMAIL_DOMAINS)}"
    elif roll < 0.45:
        rec["email"] = clean["email"].upper()
    phone = clean["phone"]
    roll = rng.random()
    if roll < 0.15:
        rec["phone"] = f"+447{rng.randrange(100_000_000, 999_999_999)}"
    elif roll < 0.4:
        rec["phone"] = f"0{phone[3:7]} {phone[7:]}"
    if rng.random() < 0.05:
        year, month, day = clean["birth_date"].split("-")
        rec["birth_date"] = f"{year}-{day if int(day) <= 12 else month}-{month}"
    if rng.random() < 0.15:
        moved = _clean_person(rng, 0, set())
        for field in ("street", "city", "postcode"):
            rec[field] = moved[field]
    elif rng.random() < 0.3:
        rec["postcode"] = clean["postcode"].replace(" ", "").lower()
        rec["street"] = _typo(rng, clean["street"])
    for field, p_missing in (
        ("email", 0.15),
        ("phone", 0.25),
        ("birth_date", 0.2),
        ("street", 0.15),
        ("postcode", 0.1),
        ("city", 0.1),
    ):
        if rng.random() < p_missing:
            rec[field] = None
    return rec


def generate_persons(
    n_records: int, *, duplicate_share: float = 0.25, seed: int = 7
) -> SyntheticPersons:
    """About ``n_records`` records; ``duplicate_share`` of them extra copies of a person."""
    rng = random.Random(seed)  # noqa: S311 (synthetic data, not secrets)
    rows: list[dict[str, str | None]] = []
    entity = 0
    used_locals: set[str] = set()
    while len(rows) < n_records:
        clean = _clean_person(rng, entity, used_locals)
        rows.append(dict(clean))
        if rng.random() < duplicate_share / (1 - duplicate_share) / 1.3:
            copies = 1 if rng.random() < 0.7 else 2
            rows.extend(_corrupt(rng, clean) for _ in range(copies))
        entity += 1
    rows = rows[:n_records]
    rng.shuffle(rows)
    records: list[MatchRecord] = []
    entity_of: dict[str, int] = {}
    for i, row in enumerate(rows):
        person_id = f"p{i:07d}"
        entity_of[person_id] = int(row.pop("_entity") or 0)
        records.append(MatchRecord(person_id=person_id, **row))
    return SyntheticPersons(records=records, entity_of=entity_of)
