"""The personal-data API's models: what deletion and export requests and answers hold.

Kept apart from `deletion` and `export`, which reach every collection's owner
in both halves: a function's routes declare these models at start, and the
domain modules load only when a deletion or an export is asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared.platform.models import Model
from shared.platform.values import DocId

QUEUE = "account-deletion"

Item = dict[str, Any]


class DeletionAccepted(Model):
    """The answer to a deletion request: the rest happens in the background."""

    userId: str  # noqa: N815 - API field name
    status: Literal["deleting"] = "deleting"


class DeletionTask(Model):
    """The `account-deletion` task body."""

    model_config = ConfigDict(extra="forbid")

    userId: DocId  # noqa: N815 - task field name


class ExportQuery(Model):
    """How much of each list to export."""

    model_config = ConfigDict(extra="forbid")

    maxItems: int | None = Field(  # noqa: N815 - API field name
        default=None, ge=1, le=10_000, description="Items per list (at most EXPORT_MAX_ITEMS)."
    )


class DataStoreExport(Model):
    """The caller's agent data store."""

    records: list[Item]
    namespaces: list[Item]


class PersonalDataExport(Model):
    """Everything stored about the caller; `truncated` names the lists cut at `maxItems`."""

    model_config = ConfigDict(extra="forbid")

    userId: str  # noqa: N815 - API field name
    exportedAt: str  # noqa: N815 - API field name
    maxItems: int  # noqa: N815 - API field name
    truncated: list[str]
    profile: Item | None
    archetypes: list[Item]
    account: Item | None
    usage: list[Item]
    phoneSessions: list[Item]  # noqa: N815 - API field name
    phoneCode: Item | None  # noqa: N815 - API field name
    tickets: list[Item]
    sessions: list[Item]
    agents: list[Item]
    deployments: list[Item]
    chosenDeployments: list[str]  # noqa: N815 - API field name
    demos: list[Item]
    dataStore: DataStoreExport  # noqa: N815 - API field name
    conversations: list[Item]
    matches: list[Item]
    notifications: list[Item]
    augmentationResults: list[Item]  # noqa: N815 - API field name
    photos: list[Item]
