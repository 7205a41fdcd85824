"""Person data: one lookup of a person's public professional profile, behind a small interface.

Production speaks People Data Labs' Person Enrichment API
(`GET {PDL_BASE_URL}/v5/person/enrich`, key in `X-Api-Key`, the person as
query parameters: `profile`, `email`, `name`, `company`, `location`,
`min_likelihood`). Its answers map to:

- 200 `{"status": 200, "likelihood": n, "data": {...}}`: a match;
- 404 `{"status": 404, "error": {"type": "not_found", ...}}`: no match (None);
- 402 `payment_required`: `OutOfCredits` (retrying cannot help until credits are bought);
- 429 `rate_limit_error`: `RateLimited`, its delay read from `x-ratelimit-reset`
  (a UTC timestamp) or `retry-after`;
- 400: `InvalidInput` (the query itself is refused);
- 401/403: `KeyRefused` (our key is refused: no lookup can succeed until an
  operator fixes it, so none is retried);
- 5xx, bad JSON, timeouts, no connection: `Unavailable` (a later try may work).

Nothing is retried here: a lookup runs inside an augmentation task, and the
task queue retries the task (with its backoff) on `Unavailable` and
`RateLimited`, up to `ARCHETYPE_TASK_ATTEMPTS` deliveries; 4xx answers are
never retried.

Only the fields an archetype needs are kept, each bounded (`trim_person`):
never emails, phone numbers, street addresses or birth dates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.platform.errors import InvalidInput, PaymentRequired, RateLimited, Unavailable

if TYPE_CHECKING:
    import requests

    from shared.platform.config import Settings

logger = logging.getLogger(__name__)

_TEXT_FIELDS = (
    "full_name",
    "first_name",
    "last_name",
    "job_title",
    "job_company_name",
    "job_company_industry",
    "industry",
    "location_name",
    "location_country",
    "headline",
    "linkedin_url",
)
_MAX_TEXT = 300
_MAX_SUMMARY = 1000
_MAX_SKILLS = 20
_MAX_EXPERIENCE = 5
_MAX_EDUCATION = 3
_DEFAULT_RETRY_SECONDS = 60
_MAX_RETRY_SECONDS = 3600


class OutOfCredits(PaymentRequired):
    """The person-data provider refuses further lookups until credits are bought."""


class KeyRefused(OutOfCredits):
    """The person-data provider refuses our key: like running out of credits, every lookup fails."""


@dataclass(frozen=True)
class PersonQuery:
    """What we know of the person to look up (empty fields are not sent).

    Attributes:
        email: An email address.
        profile: A social profile URL (LinkedIn).
        name: The full name.
        company: A current or past employer.
        location: Where they live or work.
    """

    email: str | None = None
    profile: str | None = None
    name: str | None = None
    company: str | None = None
    location: str | None = None

    def params(self) -> dict[str, str]:
        """The non-empty fields, as query parameters."""
        fields = {
            "email": self.email,
            "profile": self.profile,
            "name": self.name,
            "company": self.company,
            "location": self.location,
        }
        return {key: value.strip() for key, value in fields.items() if value and value.strip()}


@dataclass(frozen=True)
class PersonMatch:
    """A matched person.

    Attributes:
        url: Their LinkedIn profile URL, if known.
        content: The kept, bounded fields (Firestore-storable).
        likelihood: The provider's confidence, 1 to 10.
    """

    url: str | None
    content: dict[str, Any]
    likelihood: int


class PersonData(Protocol):
    """A person-data provider."""

    name: str

    def enrich(self, query: PersonQuery) -> PersonMatch | None:
        """Look one person up.

        Returns:
            The match, or None when the provider has nobody matching.

        Raises:
            OutOfCredits: The account has no credits left.
            RateLimited: Too many lookups for now.
            InvalidInput: The provider refused the query.
            Unavailable: The provider failed or could not be reached.
        """
        ...


class PeopleDataLabs:
    """The People Data Labs Person Enrichment API.

    Args:
        settings: `PDL_API_KEY`, `PDL_BASE_URL`, `PDL_MIN_LIKELIHOOD`, `PDL_TIMEOUT_SECONDS`.
        session: The pooled HTTP session.
    """

    name = "people_data_labs"

    def __init__(self, settings: Settings, session: requests.Session) -> None:
        assert settings.pdl_api_key is not None
        self._key = settings.pdl_api_key.get_secret_value()
        self._url = settings.pdl_base_url.rstrip("/") + "/v5/person/enrich"
        self._min_likelihood = settings.pdl_min_likelihood
        self._timeout = settings.pdl_timeout_seconds
        self._session = session

    def enrich(self, query: PersonQuery) -> PersonMatch | None:
        """Look one person up (see `PersonData.enrich`)."""
        import requests

        params = query.params()
        if not params:
            return None
        params["min_likelihood"] = str(self._min_likelihood)
        try:
            response = self._session.get(
                self._url,
                params=params,
                headers={"X-Api-Key": self._key, "Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise Unavailable(f"People Data Labs unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 404:
            return None
        if status == 402:
            raise OutOfCredits("People Data Labs: out of credits")
        if status in (401, 403):
            raise KeyRefused(f"People Data Labs refused the API key ({status})")
        if status == 429:
            raise RateLimited("People Data Labs: rate limited", _retry_after(response))
        if status == 400:
            raise InvalidInput("People Data Labs refused the query")
        if status != 200:
            logger.warning("person data lookup failed", extra={"status": status})
            raise Unavailable(f"People Data Labs answered {status}")
        try:
            body = response.json()
            data = body["data"]
            likelihood = int(body.get("likelihood") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable("People Data Labs answered malformed JSON") from exc
        if not isinstance(data, dict):
            raise Unavailable("People Data Labs answered malformed JSON")
        url = profile_url(data.get("linkedin_url"))
        return PersonMatch(url=url, content=trim_person(data), likelihood=likelihood)


def _retry_after(response: requests.Response) -> int:
    """Seconds until the rate-limit window resets (`x-ratelimit-reset`, then `retry-after`).

    Either header is a number of at most ten ASCII digits (or, for the reset,
    an ISO timestamp); anything else falls back to the next source, and the
    answer is between 1 second and `_MAX_RETRY_SECONDS`.
    """
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    moment: datetime | None = None
    try:
        if _small_number(reset):
            moment = datetime.fromtimestamp(int(reset), UTC)
        elif len(reset) <= 64:
            moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        moment = None
    if moment is not None and moment.tzinfo is not None:
        seconds = int((moment - datetime.now(UTC)).total_seconds()) + 1
    else:
        retry = response.headers.get("retry-after", "").strip()
        seconds = int(retry) if _small_number(retry) else _DEFAULT_RETRY_SECONDS
    return min(max(1, seconds), _MAX_RETRY_SECONDS)


def _small_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10


def profile_url(value: Any) -> str | None:
    """A LinkedIn URL as PDL gives it (`linkedin.com/in/x`), made absolute; None if not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    url = value.strip()[:2000]
    if not url.startswith(("http://", "https://")):
        url = "https://" + url
    return url


def _text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    return value.strip()[:limit] if isinstance(value, str) and value.strip() else None


def _named(value: Any) -> str | None:
    """PDL nests names as `{"name": ...}` in experience and education entries."""
    return _text(value.get("name")) if isinstance(value, dict) else _text(value)


def trim_person(data: dict[str, Any]) -> dict[str, Any]:
    """Keep the profile fields an archetype needs, each bounded, and nothing personal.

    Args:
        data: PDL's `data` object.

    Returns:
        A small, Firestore-storable map (no emails, phones, addresses or birth dates).
    """
    kept: dict[str, Any] = {}
    for field in _TEXT_FIELDS:
        if (value := _text(data.get(field))) is not None:
            kept[field] = value
    if (summary := _text(data.get("summary"), _MAX_SUMMARY)) is not None:
        kept["summary"] = summary
    skills = data.get("skills")
    if isinstance(skills, list):
        kept["skills"] = [s for s in (_text(x, 100) for x in skills) if s][:_MAX_SKILLS]
    experience = data.get("experience")
    if isinstance(experience, list):
        kept["experience"] = [
            {
                "company": _named(entry.get("company")),
                "title": _named(entry.get("title")),
                "start_date": _text(entry.get("start_date"), 10),
                "end_date": _text(entry.get("end_date"), 10),
            }
            for entry in experience[:_MAX_EXPERIENCE]
            if isinstance(entry, dict)
        ]
    education = data.get("education")
    if isinstance(education, list):
        kept["education"] = [
            {
                "school": _named(entry.get("school")),
                "degrees": [d for d in (_text(x, 100) for x in entry.get("degrees") or []) if d][
                    :3
                ],
            }
            for entry in education[:_MAX_EDUCATION]
            if isinstance(entry, dict)
        ]
    return kept
