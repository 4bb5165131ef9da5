"""Random messages and batches against the tracking API: never a 5xx, and the books balance.

Hypothesis runs every example of a test on the same database, so each example gives its
messageIds a fresh prefix and compares event counts before and after instead of totals.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from patron.collect.messages import MESSAGE_TYPES
from patron.collect.models import Event
from patron.core.runtime import Runtime
from tests.conftest import basic

FIELDS = (
    "type",
    "userId",
    "anonymousId",
    "messageId",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "sentAt",
    "originalTimestamp",
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text without NUL for the parts meant to be valid; NUL is left to the random values.
clean_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))
names = clean_text.filter(lambda s: s.strip() != "" and len(s) <= 200)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(clean_text.filter(lambda s: len(s) < 20), json_values, max_size=4)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(datetime.isoformat)


@st.composite
def valid_messages(draw: st.DrawFn, message_type: str | None = None) -> dict[str, Any]:
    kind = message_type or draw(st.sampled_from(MESSAGE_TYPES))
    message: dict[str, Any] = {"type": kind}
    who = draw(st.sampled_from(["userId", "anonymousId", "both"]))
    if who != "anonymousId" or kind == "alias":
        message["userId"] = draw(names | st.integers(0, 10**12))
    if who != "userId":
        message["anonymousId"] = draw(names)
    if kind == "track":
        message["event"] = draw(names)
    if kind in ("page", "screen") and draw(st.booleans()):
        message["name"] = draw(names)
    if kind == "group":
        message["groupId"] = draw(names)
    if kind == "alias":
        message["previousId"] = draw(names)
    for name in ("properties", "traits", "context"):
        if draw(st.booleans()):
            message[name] = draw(objects)
    if draw(st.booleans()):
        message["timestamp"] = draw(timestamps)
    # A small pool of ids makes duplicates inside a batch; None lets the server make one.
    message["messageId"] = draw(st.sampled_from(["m1", "m2", "m3", "m4", "m5", None]))
    return message


@st.composite
def broken_messages(draw: st.DrawFn) -> Any:
    """A valid message with random fields set to random values, or any JSON value at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    message = draw(valid_messages())
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        message[name] = draw(json_values)
    return message


# Each message with whether it was built valid, for a partial oracle.
any_message = st.one_of(
    valid_messages().map(lambda m: (True, m)), broken_messages().map(lambda m: (False, m))
)


def event_count(runtime: Runtime) -> int:
    with runtime.readers() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def with_prefix(message: Any, prefix: str) -> Any:
    """Make the message's messageId unique to this example, whatever its type."""
    if isinstance(message, dict) and isinstance(message.get("messageId"), str):
        return {**message, "messageId": prefix + message["messageId"]}
    return message


def stored_key(message: Any, index: int) -> str:
    """The id a message accepted by the server is stored under."""
    given_id = message.get("messageId") if isinstance(message, dict) else None
    if isinstance(given_id, str) and given_id.strip():
        return given_id.strip()
    return f"server-made-{index}"


def post(client: TestClient, path: str, body: Any, write_key: str) -> httpx.Response:
    # The standard library writes any Python int, where orjson stops at 64 bits.
    return client.post(
        path,
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
        auth=basic(write_key),
    )


def assert_error_body(response: httpx.Response) -> None:
    body = response.json()
    assert isinstance(body["code"], str), body
    assert body["code"], body
    assert isinstance(body["message"], str), body
    assert body["message"], body


@FUZZ
@given(
    messages=st.lists(any_message, max_size=30),
    batch_fields=st.fixed_dictionaries(
        {},
        optional={
            "context": objects | json_values,
            "integrations": objects,
            "sentAt": timestamps | json_values,
        },
    ),
)
def test_random_batches_balance(
    client: TestClient,
    write_key: str,
    runtime: Runtime,
    messages: list[tuple[bool, Any]],
    batch_fields: dict[str, Any],
) -> None:
    prefix = f"{uuid.uuid4().hex}-"
    batch = [with_prefix(m, prefix) for _, m in messages]
    before = event_count(runtime)
    response = post(client, "/v1/batch", {"batch": batch, **batch_fields}, write_key)
    after = event_count(runtime)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert_error_body(response)
        assert after == before
        return
    body = response.json()
    assert body["accepted"] + len(body["rejected"]) == len(batch)
    rejected = {r["index"] for r in body["rejected"]}
    assert len(rejected) == len(body["rejected"])
    for rejection in body["rejected"]:
        assert isinstance(rejection["code"], str), rejection
        assert rejection["message"], rejection
    # The request was taken, so what was built valid must have been accepted.
    assert not {i for i, (valid, _) in enumerate(messages) if valid} & rejected, body
    accepted_keys = {stored_key(m, i) for i, m in enumerate(batch) if i not in rejected}
    assert after - before == len(accepted_keys)
    assert body["duplicates"] == body["accepted"] - len(accepted_keys)


@st.composite
def single_requests(draw: st.DrawFn) -> tuple[str, bool, Any]:
    """An endpoint, and either a valid message of its type or anything at all."""
    kind = draw(st.sampled_from(MESSAGE_TYPES))
    if draw(st.booleans()):
        return kind, True, draw(valid_messages(kind))
    return kind, False, draw(st.one_of(broken_messages(), valid_messages()))


@FUZZ
@given(request=single_requests(), path_style=st.sampled_from(["long", "short"]))
def test_random_single_messages(
    client: TestClient,
    write_key: str,
    runtime: Runtime,
    request: tuple[str, bool, Any],
    path_style: str,
) -> None:
    message_type, valid, message = request
    prefix = f"{uuid.uuid4().hex}-"
    body = with_prefix(message, prefix)
    path = f"/v1/{message_type if path_style == 'long' else message_type[0]}"
    before = event_count(runtime)
    response = post(client, path, body, write_key)
    after = event_count(runtime)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        result = response.json()
        assert (result["accepted"], result["rejected"]) == (1, [])
        assert after - before == 1
    else:
        assert_error_body(response)
        assert after == before
        # Only a NUL character anywhere in the body refuses a message built valid.
        assert not valid or response.json()["code"] == "invalid_character", response.text
