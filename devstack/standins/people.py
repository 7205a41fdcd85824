"""The sample people the People Data Labs stand-in knows (all made up).

`make dev` seeds the demo user with a network of `CONTACTS` (`devstack.seed`),
so augmenting the demo user looks each of them up here and turns each into
an archetype user and a match. The demo user is known too (its own lookup
matches). Records follow PDL's person schema, lower-cased as PDL answers,
and carry the personal fields (emails, phone numbers, street address, birth
date) that the augmentation must drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SamplePerson:
    """One made-up person: who they are, where they work and their social networks."""

    first: str
    last: str
    email: str
    job_title: str
    company: str
    industry: str
    location: str
    networks: tuple[str, ...]  # social networks they have profiles on (PDL's `profiles`)
    hours_together: float  # the demo user's `timeSpent` with them

    @property
    def full_name(self) -> str:
        """First and last name."""
        return f"{self.first} {self.last}"

    def record(self) -> dict[str, Any]:
        """Their PDL person record (as `data` of an enrichment answer)."""
        handle = f"{self.first}-{self.last}".lower()
        profiles = [
            {"network": network, "username": handle, "url": f"{network}.com/in/{handle}"}
            for network in self.networks
        ]
        return {
            "id": f"sample-{handle}",
            "full_name": self.full_name.lower(),
            "first_name": self.first.lower(),
            "last_name": self.last.lower(),
            "birth_date": "1988-04-12",
            "linkedin_url": f"linkedin.com/in/{handle}",
            "linkedin_username": handle,
            "headline": f"{self.job_title} at {self.company}",
            "job_title": self.job_title.lower(),
            "job_company_name": self.company.lower(),
            "job_company_industry": self.industry,
            "industry": self.industry,
            "location_name": self.location.lower(),
            "location_country": "united states",
            "location_street_address": "1 sample street",
            "work_email": self.email,
            "personal_emails": [self.email],
            "emails": [{"address": self.email, "type": "current_professional"}],
            "mobile_phone": "+12015550199",
            "phone_numbers": ["+12015550199"],
            "summary": f"{self.first} is a {self.job_title.lower()} at {self.company}.",
            "skills": list(self.networks),
            "profiles": profiles,
            "experience": [
                {
                    "company": {"name": self.company.lower(), "industry": self.industry},
                    "title": {"name": self.job_title.lower()},
                    "start_date": "2021-03",
                    "end_date": None,
                    "is_primary": True,
                }
            ],
            "education": [{"school": {"name": "state university"}, "degrees": ["bachelors"]}],
        }


DEMO = SamplePerson(
    "Demo", "User", "demo@example.com", "Product Manager", "Series Demo Co",
    "internet", "New York, New York", ("linkedin",), 0,
)  # fmt: skip
CONTACTS = (
    SamplePerson(
        "Maya", "Okafor", "maya.okafor@example.com", "Staff Engineer", "Lumenfold",
        "computer software", "Seattle, Washington", ("linkedin", "github"), 120,
    ),
    SamplePerson(
        "Theo", "Vance", "theo.vance@example.com", "Product Designer", "Brightwater Labs",
        "design", "Austin, Texas", ("linkedin", "dribbble"), 45,
    ),
    SamplePerson(
        "Priya", "Raman", "priya.raman@example.com", "Founder and CEO", "Kettle and Crumb",
        "food and beverages", "Brooklyn, New York", ("linkedin", "twitter"), 80,
    ),
    SamplePerson(
        "Jonas", "Lindqvist", "jonas.lindqvist@example.com", "Data Scientist",
        "Northpine Analytics", "information technology and services",
        "Denver, Colorado", ("linkedin", "github"), 12,
    ),
    SamplePerson(
        "Amara", "Chen", "amara.chen@example.com", "Venture Partner", "Tidepool Ventures",
        "venture capital and private equity", "San Francisco, California",
        ("linkedin", "twitter"), 30,
    ),
)  # fmt: skip


def records() -> dict[str, dict[str, Any]]:
    """Every sample person's record, by email."""
    return {person.email: person.record() for person in (DEMO, *CONTACTS)}
