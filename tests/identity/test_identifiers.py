"""Identifier normalisation, the block list and extraction from messages (pure functions)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from patron.identity.identifiers import (
    BlockEntry,
    BlockList,
    Identifier,
    Normaliser,
    Rule,
    extract,
)

NORMAL = Normaliser()


def test_emails_are_trimmed_and_lower_cased_and_invalid_ones_refused() -> None:
    assert NORMAL.normalise("email", "  Jane.Doe@Example.COM ") == "jane.doe@example.com"
    assert NORMAL.normalise("email", "not-an-email") is None
    assert NORMAL.normalise("email", "a@b") is None


def test_gmail_rules_apply_only_when_switched_on() -> None:
    assert NORMAL.normalise("email", "J.Doe+shop@gmail.com") == "j.doe+shop@gmail.com"
    rules = Normaliser(email_provider_rules=True)
    assert rules.normalise("email", "J.Doe+shop@googlemail.com") == "jdoe@gmail.com"
    assert rules.normalise("email", "j.doe+shop@example.com") == "j.doe+shop@example.com"


def test_phones_become_e164_with_the_default_region() -> None:
    assert NORMAL.normalise("phone", "(415) 555-2671") == "+14155552671"
    assert NORMAL.normalise("phone", "+44 20 7946 0958") == "+442079460958"
    assert Normaliser("GB").normalise("phone", "020 7946 0958") == "+442079460958"
    assert NORMAL.normalise("phone", "12") is None
    assert NORMAL.normalise("phone", "call me") is None


def test_non_scalar_values_are_not_identifiers() -> None:
    for value in ({"a": 1}, [1], True, None, ""):
        assert NORMAL.normalise("user_id", value) is None
    assert NORMAL.normalise("user_id", 42) == "42"


def test_placeholders_and_admin_entries_are_blocked() -> None:
    blocked = BlockList(
        [BlockEntry("email", "shared@corp.com", False), BlockEntry(None, r"^test-\d+$", True)]
    )
    for value in ("undefined", "NULL", "0", "-1", "[object Object]", "guest", "anonymous"):
        assert blocked.blocks(Identifier("user_id", value)), value
    assert blocked.blocks(Identifier("email", "noreply@shop.com"))
    assert blocked.blocks(Identifier("email", "test@test.com"))
    assert blocked.blocks(Identifier("email", "shared@corp.com"))
    assert not blocked.blocks(Identifier("user_id", "shared@corp.com"))
    assert blocked.blocks(Identifier("anonymous_id", "test-17"))
    assert not blocked.blocks(Identifier("user_id", "u-17"))


def test_extract_reads_ids_traits_external_ids_and_declared_traits() -> None:
    payload = {
        "userId": "u-1",
        "anonymousId": "undefined",
        "traits": {"email": "A@Example.com", "phone": "4155552671", "crm_id": "C-9"},
        "context": {
            "externalIds": [
                {"id": "cus_1", "type": "stripe_customer_id", "collection": "users"},
                {"id": "acct_1", "type": "stripe_account", "collection": "accounts"},
            ]
        },
    }
    rules = {"crm_id": Rule("crm_id", 1, 40, trait="crm_id")}
    found = extract("identify", payload, rules=rules, normaliser=NORMAL, blocked=BlockList())
    assert set(found) == {
        Identifier("user_id", "u-1"),
        Identifier("email", "a@example.com"),
        Identifier("phone", "+14155552671"),
        Identifier("crm_id", "C-9"),
        Identifier("stripe_customer_id", "cus_1"),
    }


def test_group_traits_describe_the_company_not_the_person() -> None:
    payload = {"userId": "u-1", "groupId": "g", "traits": {"email": "billing@corp.com"}}
    found = extract("group", payload, rules={}, normaliser=NORMAL, blocked=BlockList())
    assert found == [Identifier("user_id", "u-1")]


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()))
def test_normalising_never_raises(value: object) -> None:
    for kind in ("email", "phone", "user_id", "crm_id"):
        result = NORMAL.normalise(kind, value)
        assert result is None or (isinstance(result, str) and result == result.strip())
