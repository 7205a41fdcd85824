"""The one place that builds Google clients.

Each client is built on first use and cached for the life of the process;
nothing here touches the network at import time. The emulator variables
(`FIRESTORE_EMULATOR_HOST`, `FIREBASE_AUTH_EMULATOR_HOST`,
`STORAGE_EMULATOR_HOST`, `CLOUD_TASKS_EMULATOR_HOST`) select the emulators,
so tests swap clients by configuration and `reset()`, never by patching.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from shared.platform import deadlines
from shared.platform.config import get_settings

if TYPE_CHECKING:
    import anthropic as anthropic_module
    import firebase_admin
    import openai as openai_module
    import requests
    from google import genai as genai_module
    from google.cloud import firestore as firestore_module
    from google.cloud import kms as kms_module
    from google.cloud import tasks_v2
    from google.cloud.storage import Client as StorageClient

    from shared.platform.loopmessage import LoopMessageClient
    from shared.platform.person_data import PersonData
    from shared.platform.sms import SmsSender

_FIREBASE_APP_NAME = "series"


@cache
def firestore() -> firestore_module.Client:
    """Return the Firestore client (the emulator when `FIRESTORE_EMULATOR_HOST` is set).

    Each of its calls ends within `FIRESTORE_DEADLINE_SECONDS`, retries included
    (`shared.platform.deadlines`).
    """
    settings = get_settings()
    return deadlines.bounded_firestore(settings.project_id, settings.firestore_deadline_seconds)


@cache
def storage() -> StorageClient:
    """Return the Cloud Storage client (fake-gcs-server when `STORAGE_EMULATOR_HOST` is set)."""
    from google.cloud.storage import Client as StorageClient

    settings = get_settings()
    if settings.storage_emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return StorageClient(
            project=settings.project_id,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    return StorageClient(project=settings.project_id)


def storage_call(*, retried: bool = True) -> dict[str, Any]:
    """Return the `timeout` and `retry` arguments of one Cloud Storage call.

    Pass them to every call that reaches Cloud Storage: the call then ends within
    `STORAGE_DEADLINE_SECONDS`, retries included (`shared.platform.deadlines`).

    Args:
        retried: Retry transient failures (reads, copies, deletes); False for uploads.
    """
    return deadlines.storage_call(get_settings().storage_deadline_seconds, retried=retried)


@cache
def tasks() -> tasks_v2.CloudTasksClient:
    """Return the Cloud Tasks client (an insecure gRPC channel to the emulator if configured)."""
    from google.cloud import tasks_v2

    host = get_settings().tasks_emulator_host
    if host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (
            CloudTasksGrpcTransport,
        )

        channel = grpc.insecure_channel(host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


@cache
def firebase_app() -> firebase_admin.App:
    """Return the Firebase Admin app used to verify ID tokens and manage users."""
    import firebase_admin

    return firebase_admin.initialize_app(
        options={"projectId": get_settings().project_id}, name=_FIREBASE_APP_NAME
    )


@cache
def http_session() -> requests.Session:
    """Return the pooled HTTP session for calls to outside services."""
    import requests

    return requests.Session()


@cache
def sms() -> SmsSender:
    """Return the SMS sender `SMS_PROVIDER` selects (Twilio, or the local console)."""
    from shared.platform.sms import ConsoleSender, TwilioSender

    settings = get_settings()
    if settings.sms_provider == "twilio":
        return TwilioSender(settings, http_session())
    return ConsoleSender(settings)


@cache
def person_data() -> PersonData | None:
    """Return the person-data provider (People Data Labs), or None when `PDL_API_KEY` is unset."""
    settings = get_settings()
    if settings.pdl_api_key is None:
        return None
    from shared.platform.person_data import PeopleDataLabs

    return PeopleDataLabs(settings, http_session())


@cache
def loopmessage() -> LoopMessageClient:
    """Return the LoopMessage client for the API generation `LOOPMESSAGE_API` selects.

    Raises:
        RuntimeError: The LoopMessage keys are not configured.
    """
    from shared.platform.loopmessage import LoopMessageClient

    return LoopMessageClient(get_settings(), http_session())


@cache
def kms() -> kms_module.KeyManagementServiceClient:
    """Return the Cloud KMS client (a local REST endpoint, without credentials, if configured)."""
    from google.cloud import kms as kms_module

    endpoint = get_settings().api_keys_kms_endpoint
    if endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return kms_module.KeyManagementServiceClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return kms_module.KeyManagementServiceClient()


@cache
def genai(vertex: bool) -> genai_module.Client:
    """Return the google-genai client: Gemini API (API key) or Gemini on Vertex AI (ADC)."""
    from google import genai as genai_module
    from google.genai import types

    settings = get_settings()
    timeout_ms = int(settings.llm_timeout_seconds * 1000)
    if vertex:
        options = types.HttpOptions(base_url=settings.vertexai_base_url, timeout=timeout_ms)
        credentials = None
        if settings.vertexai_base_url:
            from google.oauth2.credentials import Credentials

            # A local Vertex AI endpoint takes any bearer token; never used in production.
            credentials = Credentials(token="local-vertex")  # type: ignore[no-untyped-call]  # noqa: S106
        return genai_module.Client(
            vertexai=True,
            project=settings.project_id,
            location=settings.vertexai_location,
            credentials=credentials,
            http_options=options,
        )
    key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None
    return genai_with_key(key)


def genai_with_key(key: str | None) -> genai_module.Client:
    """Return a Gemini API client for `key` (a user's own key: built per call, never cached)."""
    from google import genai as genai_module
    from google.genai import types

    settings = get_settings()
    timeout_ms = int(settings.llm_timeout_seconds * 1000)
    options = types.HttpOptions(base_url=settings.gemini_base_url, timeout=timeout_ms)
    return genai_module.Client(api_key=key, http_options=options)


@cache
def openai(compatible: str | None = None) -> openai_module.OpenAI:
    """Return an OpenAI client: OpenAI itself, or an OpenAI-compatible server.

    Args:
        compatible: None for OpenAI; `ollama` or `local` (the llama.cpp server)
            for the OpenAI-compatible endpoints, which take no key.
    """
    import openai as openai_module

    settings = get_settings()
    key: str | None = compatible  # the SDK insists on some key; these servers ignore it
    base_url = {"ollama": settings.ollama_base_url, "local": settings.local_llm_base_url}.get(
        compatible or ""
    )
    if compatible is None:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        base_url = settings.openai_base_url
    return openai_module.OpenAI(
        api_key=key, base_url=base_url, timeout=settings.llm_timeout_seconds, max_retries=0
    )


def openai_with_key(key: str) -> openai_module.OpenAI:
    """Return an OpenAI client for a user's own key (built per call, never cached)."""
    import openai as openai_module

    settings = get_settings()
    return openai_module.OpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,
    )


@cache
def anthropic() -> anthropic_module.Anthropic:
    """Return the Anthropic client."""
    settings = get_settings()
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    return anthropic_with_key(key)


def anthropic_with_key(key: str | None) -> anthropic_module.Anthropic:
    """Return an Anthropic client for `key` (a user's own key: built per call, never cached)."""
    import anthropic as anthropic_module

    settings = get_settings()
    return anthropic_module.Anthropic(
        api_key=key,
        base_url=settings.anthropic_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,
    )


def reset() -> None:
    """Forget the settings and every cached client (for tests that change the environment)."""
    if firebase_app.cache_info().currsize:
        import firebase_admin

        firebase_admin.delete_app(firebase_app())
    factories = (
        firestore,
        storage,
        tasks,
        firebase_app,
        http_session,
        sms,
        person_data,
        loopmessage,
        kms,
        genai,
        openai,
        anthropic,
    )
    for factory in factories:
        factory.cache_clear()
    get_settings.cache_clear()
