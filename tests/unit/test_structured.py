"""Reading small models' structured answers leniently, and the fallbacks when they are unusable."""

from __future__ import annotations

import pytest

from shared.llm.structured import json_object
from shared.platform.person_data import PersonMatch
from shared.social.augment import Contact, fallback_draft, is_prose
from shared.social.imessage import FALLBACK_REPLY, parse_answer


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"reply": "hi"}', {"reply": "hi"}),
        ('```json\n{"reply": "hi"}\n```', {"reply": "hi"}),
        ('{"reply": "two\nlines"}', {"reply": "two\nlines"}),
        ('Sure! {"reply": "hi"} Hope that helps.', {"reply": "hi"}),
        ('{"reply": "cut off mid-sen', {"reply": "cut off mid-sen"}),
        ('{"name": {"first": "Ada", "last": "Lo', {"name": {"first": "Ada", "last": "Lo"}}),
        ("just prose", None),
        ("", None),
        ("[1, 2]", None),
    ],
)
def test_json_object_repairs_what_small_models_get_wrong(content, expected):
    assert json_object(content) == expected


def test_a_usable_reply_keeps_only_valid_profile_updates():
    answer = parse_answer(
        '{"reply": " Hi Ada! ", "profile_updates": {"first_name": "Ada", "age": 3, "elo": 1}}',
        small_model=False,
    )

    assert answer is not None
    assert answer.reply == "Hi Ada!"
    assert answer.profile_updates.model_dump(exclude_none=True) == {"first_name": "Ada"}


@pytest.mark.parametrize("content", ["not the structured answer", '{"reply": ""}', ""])
def test_a_cloud_models_unusable_answer_is_none(content):
    assert parse_answer(content, small_model=False) is None


@pytest.mark.parametrize(
    ("content", "reply"),
    [
        ("Hello there, nice to meet you!", "Hello there, nice to meet you!"),
        ('{"profile_updates": {}}', FALLBACK_REPLY),
        ("", FALLBACK_REPLY),
        ('{"reply": "Hi! I\'m the concierge', "Hi! I'm the concierge"),
    ],
)
def test_the_local_model_always_gets_a_reply(content, reply):
    answer = parse_answer(content, small_model=True)

    assert answer is not None
    assert answer.reply == reply


def test_fallback_archetype_comes_from_the_contact_and_its_profile():
    contact = Contact(name="Maya Okafor", email="maya@example.com", timeSpent=50)
    match = PersonMatch(
        url="linkedin.com/in/maya",
        content={
            "job_title": "staff engineer",
            "job_company_name": "lumen",
            "location_name": "oslo",
        },
        likelihood=8,
    )

    draft = fallback_draft(contact, match)

    assert draft.name.model_dump() == {"first": "Maya", "last": "Okafor"}
    assert draft.bio == "Maya works as Staff Engineer at Lumen, based in Oslo."
    assert draft.probability == 0.6
    alone = fallback_draft(Contact(name="Ziggy", email="z@example.com", timeSpent=500), None)
    assert (alone.name.last, alone.bio, alone.probability) == (
        "Unknown",
        "Ziggy is in your network.",
        0.9,
    )


@pytest.mark.parametrize(
    ("bio", "prose"),
    [
        ("Maya builds data platforms and mentors new engineers in Seattle.", True),
        ('{"job_title""', False),
        ("Tidepool Ventures", False),
        ("{}, {}. The person in the user's network is Maya Okafor.", False),
        ("A founder with a track record of success in [industry].", False),
    ],
)
def test_a_small_models_bio_must_read_as_prose(bio, prose):
    assert is_prose(bio) is prose


def test_the_local_models_profile_updates_must_be_in_the_texters_words():
    answer = parse_answer(
        '{"reply": "Hi!", "profile_updates": {"first_name": "Emily", "location": "Denver",'
        ' "age": 34}}',
        small_model=True,
        said="hi! who is this?\nI'm Sam and I live in denver",
    )

    assert answer is not None
    assert answer.profile_updates.model_dump(exclude_none=True) == {"location": "Denver"}
