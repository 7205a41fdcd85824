"""The People Data Labs adapter against the fake PDL server (wire format, error mapping)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from shared.platform.config import Settings
from shared.platform.errors import RateLimited, Unavailable
from shared.platform.person_data import KeyRefused, OutOfCredits, PeopleDataLabs, PersonQuery
from tests.fakes.pdl import API_KEY, FakePdl
from tests.fakes.server import serving

EMAIL = "sean.thorne@example.com"


@pytest.fixture
def pdl() -> Iterator[tuple[FakePdl, str]]:
    fake = FakePdl()
    with serving(fake.app()) as url:
        yield fake, url


def adapter(url: str, key: str = API_KEY, timeout: float = 20) -> PeopleDataLabs:
    settings = Settings.model_validate(
        {"PDL_API_KEY": key, "PDL_BASE_URL": url, "PDL_TIMEOUT_SECONDS": timeout}
    )
    return PeopleDataLabs(settings, requests.Session())


def test_match_keeps_bounded_professional_fields_only(pdl):
    fake, url = pdl

    match = adapter(url).enrich(PersonQuery(email=EMAIL, name="Sean Thorne"))

    assert match is not None
    assert match.url == "https://linkedin.com/in/sean-thorne"
    assert match.likelihood == 8
    assert match.content["job_title"] == "product manager"
    assert len(match.content["summary"]) == 1000
    assert len(match.content["skills"]) == 20
    assert match.content["experience"][0] == {
        "company": "company 0",
        "title": "product manager",
        "start_date": "2020-01",
        "end_date": None,
    }
    assert "example.com" not in str(match.content)
    assert "+1415" not in str(match.content)
    assert "birth_date" not in match.content
    assert fake.requests == [{"email": EMAIL, "name": "Sean Thorne", "min_likelihood": "6"}]


def test_no_match_and_empty_query_are_none(pdl):
    fake, url = pdl
    fake.unknown.add(EMAIL)

    assert adapter(url).enrich(PersonQuery(email=EMAIL)) is None
    assert adapter(url).enrich(PersonQuery(name="  ")) is None
    assert len(fake.requests) == 1


def test_errors_map_to_domain_errors(pdl):
    fake, url = pdl
    fake.flaky.add(EMAIL)
    fake.broken.add("broken@example.com")

    with pytest.raises(RateLimited) as limited:
        adapter(url).enrich(PersonQuery(email=EMAIL))
    with pytest.raises(Unavailable):
        adapter(url).enrich(PersonQuery(email="broken@example.com"))
    with pytest.raises(KeyRefused):
        adapter(url, key="wrong").enrich(PersonQuery(email=EMAIL))
    fake.credits = 0
    with pytest.raises(OutOfCredits):
        adapter(url).enrich(PersonQuery(email=EMAIL))

    assert 1 <= limited.value.retry_after <= 3


def test_each_lookup_is_one_request_whatever_the_answer(pdl):
    """No retry inside the adapter: the augmentation task's queue retries, never a 4xx."""
    fake, url = pdl
    fake.broken.add("broken@example.com")
    fake.unknown.add("nobody@example.com")
    outcomes = {
        "broken@example.com": (Unavailable, API_KEY),
        "nobody@example.com": (None, API_KEY),
        EMAIL: (KeyRefused, "wrong"),
    }

    for email, (error, key) in outcomes.items():
        if error is None:
            assert adapter(url, key).enrich(PersonQuery(email=email)) is None
        else:
            with pytest.raises(error):
                adapter(url, key).enrich(PersonQuery(email=email))

    assert [fake.lookups(email) for email in outcomes] == [1, 1, 1]


def test_a_timed_out_lookup_is_unavailable_after_one_request(pdl):
    fake, url = pdl
    fake.delay_seconds = 1.0

    with pytest.raises(Unavailable):
        adapter(url, timeout=0.3).enrich(PersonQuery(email=EMAIL))

    assert fake.lookups(EMAIL) == 1
