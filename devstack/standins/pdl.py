"""The People Data Labs stand-in: the Person Enrichment API (`GET /v5/person/enrich`).

Speaks the documented wire format: the key in `X-Api-Key` (401
`authentication_error` without it), the person as query parameters, 200
`{"status": 200, "likelihood": n, "data": {...}}` with a full person record
(including the emails, phone numbers and addresses we must not keep), 404
`not_found`, 402 `payment_required`, 429 `rate_limit_error`, and on every
answer the usage headers (`x-ratelimit-limit`, `x-ratelimit-remaining`,
`x-ratelimit-reset`, `x-call-credits-spent`, `x-call-credits-type`,
`x-totallimit-remaining`).

The people it knows (`people`, by email, also found by full name) get their
own records; anyone else gets a made-up record built from the query
(`answer_anyone`, the tests' default) or 404 (`make dev`, which knows the
sample people of `devstack.standins.people`). Tests choose who is unknown
(404), whose first lookup fails (alternately 429 and 503, then succeeds),
whose lookups always fail (503), after how many matches credits run out
(402), and a delay before each answer. `GET /` lists every lookup and its
answer (`devstack.standins.journal`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import flask

from devstack.standins.journal import Journal, install

API_KEY = "local-pdl-key"


@dataclass
class PdlStandIn:
    """State of the stand-in."""

    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer_anyone: bool = True
    unknown: set[str] = field(default_factory=set)
    flaky: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    credits: int | None = None
    delay_seconds: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)
    journal: Journal = field(default_factory=Journal)
    _failed_once: set[str] = field(default_factory=set)
    _flaky_answers: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget the lookups and every failure the tests chose."""
        with self._lock:
            self.unknown.clear()
            self.flaky.clear()
            self.broken.clear()
            self.credits = None
            self.delay_seconds = 0.0
            self._failed_once.clear()
            self._flaky_answers = 0
        self.clear()

    def clear(self) -> None:
        """Forget the lookups received (`DELETE /`)."""
        with self._lock:
            self.requests.clear()
        self.journal.clear()

    def _known(self, params: dict[str, str]) -> dict[str, Any] | None:
        """The record of a known person the query names (by email, else by full name)."""
        email = params.get("email", "").strip().lower()
        if email in self.people:
            return self.people[email]
        name = params.get("name", "").strip().lower()
        found = [p for p in self.people.values() if name and p.get("full_name") == name]
        return found[0] if found else None

    def _summary(self) -> dict[str, Any]:
        return {"people": sorted(self.people), "answer_anyone": self.answer_anyone}

    def lookups(self, email: str) -> int:
        """How many requests asked for this email."""
        with self._lock:
            return sum(1 for params in self.requests if params.get("email") == email)

    def _failure(self, params: dict[str, str]) -> flask.Response | None:
        """The error answer this lookup gets, if any (called under the lock)."""
        email = params.get("email", "")
        if email in self.broken:
            return _error(503, "error", "An internal error occurred")
        if email in self.flaky and email not in self._failed_once:
            self._failed_once.add(email)
            self._flaky_answers += 1
            if self._flaky_answers % 2:
                message = "An error occurred due to requests hitting the API too quick"
                return _error(429, "rate_limit_error", message, remaining=0)
            return _error(503, "error", "An internal error occurred")
        unknown = email in self.unknown or not (email or params.get("name"))
        if unknown or (not self.answer_anyone and self._known(params) is None):
            return _error(404, "not_found", "No records were found matching your request")
        if self.credits is not None and self.credits <= 0:
            message = "You have hit your account maximum for person enrichment"
            return _error(402, "payment_required", message)
        if self.credits is not None:
            self.credits -= 1
        return None

    def app(self) -> flask.Flask:
        """The stand-in's WSGI app."""
        app = flask.Flask("pdl-standin")
        install(
            app,
            self.journal,
            service="People Data Labs stand-in",
            summary=self._summary,
            clear=self.clear,
        )

        @app.get("/v5/person/enrich")
        def enrich() -> flask.Response:
            params = dict(flask.request.args)
            with self._lock:
                self.requests.append(params)
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            failure: flask.Response | None
            with self._lock:
                if flask.request.headers.get("X-Api-Key") != API_KEY:
                    failure = _error(401, "authentication_error", "Invalid API key")
                else:
                    failure = self._failure(params)
            if failure is not None:
                return failure
            record = self._known(params) or _person(params)
            response = flask.jsonify(status=200, likelihood=8, data=record)
            _usage_headers(response, spent=1)
            return response

        return app


def _person(params: dict[str, str]) -> dict[str, Any]:
    """A person record shaped like PDL's, with the personal fields it really carries."""
    email = params.get("email") or "someone@example.com"
    handle = email.split("@")[0].replace(".", "-")
    name = params.get("name") or handle.replace("-", " ").title()
    first, _, last = name.partition(" ")
    return {
        "id": f"pdl-{handle}",
        "full_name": name.lower(),
        "first_name": first.lower(),
        "last_name": last.lower(),
        "birth_date": "1990-01-01",
        "linkedin_url": f"linkedin.com/in/{handle}",
        "linkedin_username": handle,
        "job_title": "product manager",
        "job_company_name": "acme",
        "job_company_industry": "computer software",
        "industry": "computer software",
        "location_name": "san francisco, california, united states",
        "location_country": "united states",
        "location_street_address": "1 market street",
        "work_email": email,
        "personal_emails": [email],
        "emails": [{"address": email, "type": "current_professional"}],
        "mobile_phone": "+14155550100",
        "phone_numbers": ["+14155550100"],
        "summary": "Builds products people love. " * 100,
        "skills": [f"skill {n}" for n in range(40)],
        "experience": [
            {
                "company": {"name": f"company {n}", "size": "51-200"},
                "title": {"name": "product manager", "role": "product"},
                "start_date": "2020-01",
                "end_date": None,
            }
            for n in range(8)
        ],
        "education": [{"school": {"name": "state university"}, "degrees": ["bachelors"]}],
    }


def _usage_headers(response: flask.Response, *, spent: int, remaining: int = 999) -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response.headers["x-call-credits-spent"] = str(spent)
    response.headers["x-call-credits-type"] = "enrich"
    response.headers["x-ratelimit-reset"] = reset
    response.headers["x-ratelimit-remaining"] = str(
        {"minute": remaining, "day": None, "month": None}
    )
    response.headers["x-ratelimit-limit"] = str({"minute": 1000, "day": None, "month": None})
    response.headers["x-totallimit-remaining"] = "1342"


def _error(status: int, kind: str, message: str, remaining: int = 999) -> flask.Response:
    response = flask.jsonify(status=status, error={"type": kind, "message": message})
    response.status_code = status
    _usage_headers(response, spent=0, remaining=remaining)
    return response
