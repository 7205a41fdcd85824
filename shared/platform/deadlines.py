"""Bounded calls to Firestore and Cloud Storage: every call ends within a deadline.

Google's clients retry transient errors for up to 60 s (Firestore queries and
multi-document reads: 300 s; Cloud Storage: 120 s), and a server that stops
answering holds a call as long. Here every Firestore call, retries included,
ends within `FIRESTORE_DEADLINE_SECONDS`, and every Cloud Storage call within
`STORAGE_DEADLINE_SECONDS`. A call cut short raises `DeadlineExceeded`,
`RetryError` or `ServiceUnavailable` (Firestore) or a `requests`
`ConnectionError`/`Timeout` (Cloud Storage), which `shared.platform.http`
answers with 503 and `Retry-After`.

Retry policy: Firestore reads retry DEADLINE_EXCEEDED, INTERNAL,
RESOURCE_EXHAUSTED and UNAVAILABLE (Google's defaults); writes retry only
UNAVAILABLE and RESOURCE_EXHAUSTED (the request was not processed), as
Google's defaults do; both with exponential backoff (0.1 s to 1 s) inside the
deadline. Cloud Storage reads, copies and deletes retry Google's transient
set inside the deadline; uploads are not retried (the caller's request fails
and may be sent again).

The Firestore bound replaces the retry wrappers of the generated transport
(`_prep_wrapped_messages`, `_wrapped_methods`) and the client's transport
factory (`_firestore_api_helper`), which are not public API: the functions'
requirements hold google-cloud-firestore to the 2.34 series they were
checked on, and the fault tests (`tests/integration/test_faults.py`) fail if
an upgrade changes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import firestore as firestore_module

_FIRESTORE_READS = (
    "get_document",
    "list_documents",
    "batch_get_documents",
    "run_query",
    "run_aggregation_query",
    "partition_query",
    "list_collection_ids",
)
_FIRESTORE_WRITES = (
    "commit",
    "batch_write",
    "create_document",
    "update_document",
    "delete_document",
    "begin_transaction",
    "rollback",
)


def bounded_firestore(project: str, deadline: float) -> firestore_module.Client:
    """Build a Firestore client whose calls end within `deadline` seconds, retries included.

    Args:
        project: The Google Cloud project.
        deadline: Seconds one call (all its attempts) may take.

    Returns:
        The client (the emulator when `FIRESTORE_EMULATOR_HOST` is set).
    """
    from google.api_core import exceptions, gapic_v1, retry
    from google.cloud import firestore as firestore_module
    from google.cloud.firestore_v1.services.firestore import client as gapic_client
    from google.cloud.firestore_v1.services.firestore.transports import grpc as gapic_grpc

    def policy(*transient: type[Exception]) -> retry.Retry:
        predicate = retry.if_exception_type(*transient)
        return retry.Retry(
            initial=0.1, maximum=1.0, multiplier=1.3, predicate=predicate, timeout=deadline
        )

    reads = policy(
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.ResourceExhausted,
        exceptions.ServiceUnavailable,
    )
    writes = policy(exceptions.ResourceExhausted, exceptions.ServiceUnavailable)

    class Transport(gapic_grpc.FirestoreGrpcTransport):
        def _prep_wrapped_messages(self, client_info: Any) -> None:
            super()._prep_wrapped_messages(client_info)  # type: ignore[no-untyped-call]
            for names, retry_policy in ((_FIRESTORE_READS, reads), (_FIRESTORE_WRITES, writes)):
                for name in names:
                    method = getattr(self, name)
                    self._wrapped_methods[method] = gapic_v1.method.wrap_method(  # type: ignore[no-untyped-call]
                        method,
                        default_retry=retry_policy,
                        default_timeout=deadline,
                        client_info=client_info,
                    )

    class Client(firestore_module.Client):
        @property
        def _firestore_api(self) -> Any:
            return self._firestore_api_helper(Transport, gapic_client.FirestoreClient, gapic_client)

    return Client(project=project)


def storage_call(deadline: float, *, retried: bool = True) -> dict[str, Any]:
    """Keyword arguments that bound one Cloud Storage call to `deadline` seconds.

    Half the deadline for each attempt's socket timeouts, half for retrying
    (a retry starts only within it), so the whole call ends within `deadline`.

    Args:
        deadline: Seconds the call (all its attempts) may take.
        retried: Retry transient failures (reads, copies, deletes); False for uploads.

    Returns:
        `timeout` and `retry` for the google-cloud-storage method.
    """
    from google.cloud.storage.retry import DEFAULT_RETRY

    half = deadline / 2
    return {"timeout": half, "retry": DEFAULT_RETRY.with_timeout(half) if retried else None}
