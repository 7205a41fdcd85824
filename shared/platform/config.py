"""Typed settings read once from the environment.

Every variable is listed in `.env.example`. Secrets arrive as environment
variables (from Secret Manager in production) and are held as `SecretStr`
so they never print by accident.

`Settings` is a plain pydantic model validated from `os.environ` (lists and
maps as JSON text): pydantic-settings did the same with ~25 ms more import
on every cold start.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.platform.addresses import (
    AllowEntry,
    parse_allow_entry,
    parse_url,
    unsafe_in_production,
)

Environment = Literal["local", "test", "production"]

DEFAULT_QUEUE_WORKERS = {
    "chat-tickets": "chat_worker",
    "archetype-generation": "archetype_worker",
    "image-analysis": "image_worker",
    "agent-replies": "agent_worker",
    "account-deletion": "deletion_worker",
}
_LOCAL_TASK_SECRET = "local-task-signing-secret"  # noqa: S105 - refused in production below
_LOCAL_CODE_SECRET = "local-phone-code-secret"  # noqa: S105 - refused in production below
_LOCAL_SERVICE_SECRET = "local-service-signing-secret"  # noqa: S105 - refused in production below
_LOCAL_ARCHETYPE_SECRET = "local-archetype-id-secret"  # noqa: S105 - refused in production below
LOCAL_LLM_PROVIDER = "local"
LOCAL_LLM_MODEL = "smollm2-135m-instruct"  # the catalog's model of provider `local`
# Base64 of 32 bytes; production wraps with Cloud KMS and refuses any local key.
_LOCAL_API_KEYS_KEK = "bG9jYWwtYXBpLWtleXMtd3JhcHBpbmcta2V5LTMyYnk="


class Settings(BaseModel):
    """The service configuration.

    Attributes mirror environment variables of the same name in upper case
    (for example `project_id` is `GOOGLE_CLOUD_PROJECT`).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    app_env: Environment = Field(default="local", alias="APP_ENV")
    project_id: str = Field(default="demo-series", alias="GOOGLE_CLOUD_PROJECT")
    region: str = Field(default="us-central1", alias="FUNCTION_REGION")
    service_name: str = Field(default="series-api", alias="SERVICE_NAME")
    version: str = Field(default="1.0.0", alias="SERVICE_VERSION")
    revision: str | None = Field(default=None, alias="K_REVISION")

    firestore_emulator_host: str | None = Field(default=None, alias="FIRESTORE_EMULATOR_HOST")
    firebase_auth_emulator_host: str | None = Field(
        default=None, alias="FIREBASE_AUTH_EMULATOR_HOST"
    )
    storage_emulator_host: str | None = Field(default=None, alias="STORAGE_EMULATOR_HOST")
    tasks_emulator_host: str | None = Field(default=None, alias="CLOUD_TASKS_EMULATOR_HOST")

    profiles_bucket: str = Field(default="series-v1-profiles", alias="PROFILES_BUCKET")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, alias="MAX_UPLOAD_BYTES", gt=0)
    max_image_pixels: int = Field(
        default=40_000_000,
        alias="MAX_IMAGE_PIXELS",
        gt=0,
        description="Largest image (width x height) accepted, checked before decoding.",
    )
    signing_service_account: str | None = Field(
        default=None,
        alias="SIGNING_SERVICE_ACCOUNT",
        description="Service account that signs URLs through IAM signBlob (production).",
    )
    signing_credentials_file: str | None = Field(
        default=None,
        alias="SIGNING_CREDENTIALS_FILE",
        description="Service-account key file that signs URLs locally (emulators only).",
    )
    signed_url_minutes: int = Field(default=15, alias="SIGNED_URL_MINUTES", gt=0, le=10080)
    deepface_home: str | None = Field(default=None, alias="DEEPFACE_HOME")
    face_attributes: list[str] = Field(
        default_factory=lambda: ["gender", "race"],
        alias="FACE_ATTRIBUTES",
        description="DeepFace attributes to compute (JSON list of gender, race).",
    )
    special_category_inference: bool = Field(
        default=False,
        alias="SPECIAL_CATEGORY_INFERENCE",
        description=(
            "Whether inferred gender and race (special-category data) may be computed;"
            " off unless a deployment turns it on."
        ),
    )
    analyze_inline_max_bytes: int = Field(
        default=2 * 1024 * 1024, alias="ANALYZE_INLINE_MAX_BYTES", gt=0
    )

    task_queues: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_QUEUE_WORKERS),
        alias="TASK_QUEUES",
        description="Queue name to the worker function Cloud Tasks calls (JSON).",
    )
    tasks_location: str = Field(default="us-central1", alias="TASKS_LOCATION")
    tasks_target_base_url: str = Field(
        default="http://127.0.0.1:8000/_functions", alias="TASKS_TARGET_BASE_URL"
    )
    tasks_invoker_service_account: str | None = Field(
        default=None, alias="TASKS_INVOKER_SERVICE_ACCOUNT"
    )
    task_signing_secret: SecretStr = Field(
        default=SecretStr(_LOCAL_TASK_SECRET), alias="TASK_SIGNING_SECRET"
    )

    trusted_proxy_hops: int = Field(
        default=0,
        alias="TRUSTED_PROXY_HOPS",
        ge=0,
        description="Proxies in front of the service that append to X-Forwarded-For.",
    )

    default_phone_region: str = Field(default="US", alias="DEFAULT_PHONE_REGION")
    phone_code_secret: SecretStr = Field(
        default=SecretStr(_LOCAL_CODE_SECRET), alias="PHONE_CODE_SECRET"
    )
    phone_code_ttl_seconds: int = Field(default=600, alias="PHONE_CODE_TTL_SECONDS", gt=0)
    phone_code_max_attempts: int = Field(default=5, alias="PHONE_CODE_MAX_ATTEMPTS", gt=0)
    phone_code_resend_seconds: int = Field(default=30, alias="PHONE_CODE_RESEND_SECONDS", ge=0)
    phone_sends_per_number_per_hour: int = Field(
        default=5, alias="PHONE_SENDS_PER_NUMBER_PER_HOUR", gt=0
    )
    phone_sends_per_ip_per_hour: int = Field(default=20, alias="PHONE_SENDS_PER_IP_PER_HOUR", gt=0)
    test_phone_numbers: dict[str, str] = Field(
        default_factory=dict,
        alias="TEST_PHONE_NUMBERS",
        description="E.164 number to fixed code (JSON); no SMS is sent to these.",
    )
    token_cache_seconds: float = Field(
        default=30,
        alias="TOKEN_CACHE_SECONDS",
        ge=0,
        description="How long an instance trusts a token it verified (revocation seen after).",
    )
    deletion_steps_per_task: int = Field(
        default=4,
        alias="DELETION_STEPS_PER_TASK",
        gt=0,
        le=100,
        description="Account deletion steps one task runs before it queues the rest.",
    )
    export_max_items: int = Field(
        default=1000,
        alias="EXPORT_MAX_ITEMS",
        gt=0,
        le=10000,
        description="Items per section of a personal data export (newest first where ordered).",
    )
    session_token_ttl_seconds: int = Field(
        default=30 * 24 * 3600, alias="SESSION_TOKEN_TTL_SECONDS", gt=0
    )

    sms_provider: Literal["twilio", "console"] = Field(default="console", alias="SMS_PROVIDER")
    twilio_api_base: str = Field(default="https://api.twilio.com", alias="TWILIO_API_BASE")
    twilio_account_sid: str | None = Field(default=None, alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr | None = Field(default=None, alias="TWILIO_AUTH_TOKEN")
    twilio_from_number: str | None = Field(default=None, alias="TWILIO_FROM_NUMBER")

    elo_k_factor: float = Field(default=32, alias="ELO_K_FACTOR", gt=0)
    profiles_per_phone_per_day: int = Field(
        default=3,
        alias="PROFILES_PER_PHONE_PER_DAY",
        gt=0,
        description="Profiles a non-admin may create with one phone number in 24 hours.",
    )
    profiles_per_ip_per_day: int = Field(
        default=20,
        alias="PROFILES_PER_IP_PER_DAY",
        gt=0,
        description="Profiles non-admins may create from one client address in 24 hours.",
    )
    referrals_per_ip_per_day: int = Field(
        default=10,
        alias="REFERRALS_PER_IP_PER_DAY",
        gt=0,
        description="Referral matches new profiles may claim from one client address in 24 hours.",
    )
    referrals_per_referrer_per_day: int = Field(
        default=20,
        alias="REFERRALS_PER_REFERRER_PER_DAY",
        gt=0,
        description="Referral matches naming one referrer that may be claimed in 24 hours.",
    )
    augmentations_per_user_per_day: int = Field(
        default=5,
        alias="AUGMENTATIONS_PER_USER_PER_DAY",
        gt=0,
        description="LinkedIn augmentation runs a non-admin may start for themself in 24 hours.",
    )

    max_json_body_bytes: int = Field(default=1_048_576, alias="MAX_JSON_BODY_BYTES", gt=0)

    firestore_deadline_seconds: float = Field(
        default=10,
        alias="FIRESTORE_DEADLINE_SECONDS",
        gt=0,
        description="Longest one Firestore call may take, retries included (then 503).",
    )
    storage_deadline_seconds: float = Field(
        default=20,
        alias="STORAGE_DEADLINE_SECONDS",
        gt=0,
        description="Longest one Cloud Storage call may take, retries included (then 503).",
    )
    unavailable_retry_after_seconds: int = Field(
        default=5,
        alias="UNAVAILABLE_RETRY_AFTER_SECONDS",
        gt=0,
        description="The `Retry-After` of a 503 answer (a dependency down or too slow).",
    )

    gemini_api_key: SecretStr | None = Field(default=None, alias="GEMINI_API_KEY")
    gemini_base_url: str | None = Field(default=None, alias="GEMINI_BASE_URL")
    vertexai_enabled: bool = Field(default=False, alias="VERTEXAI_ENABLED")
    vertexai_location: str = Field(default="us-central1", alias="VERTEXAI_LOCATION")
    vertexai_base_url: str | None = Field(
        default=None,
        alias="VERTEXAI_BASE_URL",
        description="A Vertex AI endpoint reached without credentials (tests only).",
    )
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = Field(default=None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    ollama_base_url: str | None = Field(default=None, alias="OLLAMA_BASE_URL")
    local_llm_base_url: str | None = Field(
        default=None,
        alias="LOCAL_LLM_BASE_URL",
        description="An OpenAI-compatible llama.cpp server (`make dev` runs SmolLM2 there).",
    )
    llm_timeout_seconds: float = Field(default=120, alias="LLM_TIMEOUT_SECONDS", gt=0)
    api_keys_kms_key: str | None = Field(
        default=None,
        alias="API_KEYS_KMS_KEY",
        pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$",
        description="The Cloud KMS key that wraps the data keys of users' API keys"
        " (required in production).",
    )
    api_keys_kms_endpoint: str | None = Field(
        default=None,
        alias="API_KEYS_KMS_ENDPOINT",
        description="A Cloud KMS REST endpoint reached without credentials (tests only).",
    )
    api_keys_local_kek: SecretStr | None = Field(
        default=None,
        alias="API_KEYS_LOCAL_KEK",
        description="Base64 of the 32-byte local key that wraps data keys when"
        " API_KEYS_KMS_KEY is unset (never in production).",
    )
    llm_max_attempts: int = Field(
        default=3,
        alias="LLM_MAX_ATTEMPTS",
        ge=1,
        description="Tries of one model call refused with 429 or 5xx or not connected.",
    )
    llm_retry_backoff_seconds: float = Field(
        default=0.5,
        alias="LLM_RETRY_BACKOFF_SECONDS",
        ge=0,
        description="Wait before the second try of a model call, doubled for each next one.",
    )

    chat_lease_seconds: float = Field(
        default=300,
        alias="CHAT_LEASE_SECONDS",
        gt=0,
        description="How long a chat worker holds a ticket: a retry waits this long after a"
        " worker died mid-ticket (longer than LLM_TIMEOUT_SECONDS times LLM_MAX_ATTEMPTS).",
    )

    plan_caps: dict[str, float] = Field(
        default_factory=lambda: {"free": 5.0, "pro": 50.0},
        alias="PLAN_CAPS",
        description="Plan name to the largest monthly allowance in USD (JSON).",
    )
    default_plan: str = Field(default="free", alias="DEFAULT_PLAN")
    allowance_period_days: int = Field(default=30, alias="ALLOWANCE_PERIOD_DAYS", gt=0)

    cors_origins: list[str] = Field(
        default_factory=list,
        alias="CORS_ORIGINS",
        description=(
            "Browser origins (scheme://host[:port], JSON list) every route answers"
            " cross-origin, with credentials, e.g. the gofannon web UI in development."
        ),
    )

    fetch_allowed_addresses: list[str] = Field(
        default_factory=list,
        alias="FETCH_ALLOWED_ADDRESSES",
        description=(
            "Addresses outbound fetches may reach although not public (JSON list of"
            " ADDRESS:PORT, [IPV6]:PORT, ADDRESS or CIDR); tests and local runs only."
        ),
    )
    fetch_max_bytes: int = Field(default=5 * 1024 * 1024, alias="FETCH_MAX_BYTES", gt=0)
    fetch_connect_timeout_seconds: float = Field(
        default=5, alias="FETCH_CONNECT_TIMEOUT_SECONDS", gt=0
    )
    fetch_read_timeout_seconds: float = Field(default=10, alias="FETCH_READ_TIMEOUT_SECONDS", gt=0)
    fetch_total_timeout_seconds: float = Field(
        default=30, alias="FETCH_TOTAL_TIMEOUT_SECONDS", gt=0
    )
    fetch_max_redirects: int = Field(default=5, alias="FETCH_MAX_REDIRECTS", ge=0, le=20)
    mcp_timeout_seconds: float = Field(default=30, alias="MCP_TIMEOUT_SECONDS", gt=0)
    outbound_requests_per_minute: int = Field(
        default=120,
        alias="OUTBOUND_REQUESTS_PER_MINUTE",
        gt=0,
        description="Fetches of user-supplied URLs (MCP, specs) one caller may ask for per minute.",
    )
    public_api_url: str | None = Field(
        default=None,
        alias="PUBLIC_API_URL",
        pattern=r"^(https?://[^/?#]+)?$",
        description="The API's origin as browsers reach it (demo pages call it).",
    )

    platform_url: str = Field(
        default="http://127.0.0.1:8000",
        alias="PLATFORM_URL",
        description="The public API base URL, as agent code in the sandbox calls it back.",
    )
    sandbox_url: str = Field(
        default="http://127.0.0.1:8000/_functions/sandbox",
        alias="SANDBOX_URL",
        description="The private sandbox function's URL (also the ID token audience).",
    )
    service_signing_secret: SecretStr = Field(
        default=SecretStr(_LOCAL_SERVICE_SECRET), alias="SERVICE_SIGNING_SECRET"
    )
    run_llm_budget: float = Field(
        default=1.0,
        alias="RUN_LLM_BUDGET",
        ge=0,
        le=1_000,
        description="USD the model calls of one run (nested agent calls included) may cost.",
    )
    public_run_llm_budget: float = Field(
        default=0.05,
        alias="PUBLIC_RUN_LLM_BUDGET",
        ge=0,
        le=1_000,
        description="USD one run of another user's public deployment may cost its caller.",
    )
    runs_per_user: int = Field(
        default=4,
        alias="RUNS_PER_USER",
        gt=0,
        le=1_000,
        description="Runs of agent code one user may have going at once (429 beyond).",
    )
    agent_calls_per_run: int = Field(
        default=4,
        alias="AGENT_CALLS_PER_RUN",
        gt=0,
        le=100,
        description="Agent calls (gofannon_client.call) one run may have going at once.",
    )
    demo_capability_seconds: int = Field(
        default=600,
        alias="DEMO_CAPABILITY_SECONDS",
        gt=0,
        le=3600,
        description="Lifetime of a demo page's capability (POST /rest/{its deployments}).",
    )
    agent_call_max_depth: int = Field(default=5, alias="AGENT_CALL_MAX_DEPTH", ge=0, le=20)
    sandbox_cpu_seconds: int = Field(default=30, alias="SANDBOX_CPU_SECONDS", gt=0)
    sandbox_wall_seconds: float = Field(default=60, alias="SANDBOX_WALL_SECONDS", gt=0)
    sandbox_memory_mb: int = Field(
        default=1024,
        alias="SANDBOX_MEMORY_MB",
        ge=256,
        description="Memory of one run's processes together (and each one's address space).",
    )
    sandbox_file_mb: int = Field(default=64, alias="SANDBOX_FILE_MB", gt=0)
    sandbox_open_files: int = Field(default=128, alias="SANDBOX_OPEN_FILES", ge=32)
    sandbox_output_bytes: int = Field(default=1_048_576, alias="SANDBOX_OUTPUT_BYTES", gt=0)
    sandbox_result_bytes: int = Field(default=4_194_304, alias="SANDBOX_RESULT_BYTES", gt=0)
    sandbox_max_processes: int = Field(
        default=16,
        alias="SANDBOX_MAX_PROCESSES",
        gt=0,
        description="Processes one run may have at once (its whole tree).",
    )
    sandbox_max_tasks: int = Field(
        default=64,
        alias="SANDBOX_MAX_TASKS",
        gt=0,
        description="Tasks (processes and their threads together) one run may have at once.",
    )
    sandbox_disk_mb: int = Field(
        default=128,
        alias="SANDBOX_DISK_MB",
        gt=0,
        description="Size of a run's only writable space (a tmpfs, so it is memory too).",
    )
    sandbox_uid: int = Field(
        default=65534,
        alias="SANDBOX_UID",
        gt=0,
        description="The unprivileged uid runs drop to when the sandbox host runs as root.",
    )
    sandbox_isolation: Literal["auto", "root", "userns", "none"] = Field(
        default="auto",
        alias="SANDBOX_ISOLATION",
        description="root: namespaces and a uid drop; userns: user namespace, read-only "
        "file system, no capabilities; auto picks by the host's uid; none is local only.",
    )
    sandbox_work_root: str | None = Field(default=None, alias="SANDBOX_WORK_ROOT")
    data_store_record_bytes: int = Field(default=262_144, alias="DATA_STORE_RECORD_BYTES", gt=0)
    data_store_namespace_bytes: int = Field(
        default=16 * 1024 * 1024, alias="DATA_STORE_NAMESPACE_BYTES", gt=0
    )
    data_store_namespace_records: int = Field(
        default=10_000, alias="DATA_STORE_NAMESPACE_RECORDS", gt=0
    )
    sandbox_egress_allowlist: list[str] = Field(
        default_factory=list,
        alias="SANDBOX_EGRESS_ALLOWLIST",
        description="Non-public origins agent code may reach besides the platform (JSON list).",
    )

    pdl_api_key: SecretStr | None = Field(
        default=None,
        alias="PDL_API_KEY",
        description="People Data Labs key; unset, augmentation records lookups as not configured.",
    )
    pdl_base_url: str = Field(default="https://api.peopledatalabs.com", alias="PDL_BASE_URL")
    pdl_min_likelihood: int = Field(default=6, alias="PDL_MIN_LIKELIHOOD", ge=1, le=10)
    pdl_timeout_seconds: float = Field(default=20, alias="PDL_TIMEOUT_SECONDS", gt=0)
    archetype_llm_provider: str = Field(default="gemini", alias="ARCHETYPE_LLM_PROVIDER")
    archetype_llm_model: str = Field(default="gemini-2.5-flash", alias="ARCHETYPE_LLM_MODEL")
    archetype_task_attempts: int = Field(
        default=5,
        alias="ARCHETYPE_TASK_ATTEMPTS",
        ge=1,
        le=100,
        description="Deliveries of one augmentation task before it is counted as failed.",
    )
    archetype_id_secret: SecretStr = Field(
        default=SecretStr(_LOCAL_ARCHETYPE_SECRET), alias="ARCHETYPE_ID_SECRET"
    )
    loopmessage_api: Literal["legacy", "current"] = Field(
        default="legacy",
        alias="LOOPMESSAGE_API",
        description="legacy: server.loopmessage.com with Authorization and Loop-Secret-Key; "
        "current: a.loopmessage.com with an API key only.",
    )
    loopmessage_base_url: str | None = Field(
        default=None,
        alias="LOOPMESSAGE_BASE_URL",
        description="Overrides the API origin LOOPMESSAGE_API implies (tests, proxies).",
    )
    loopmessage_auth_key: SecretStr | None = Field(default=None, alias="LOOPMESSAGE_AUTH_KEY")
    loopmessage_secret_key: SecretStr | None = Field(default=None, alias="LOOPMESSAGE_SECRET_KEY")
    loopmessage_sender: str | None = Field(
        default=None,
        alias="LOOPMESSAGE_SENDER",
        description="The dedicated sender name (legacy) or sender id (current).",
    )
    loopmessage_webhook_secret: SecretStr | None = Field(
        default=None,
        alias="LOOPMESSAGE_WEBHOOK_SECRET",
        description="The Authorization value set for webhooks in LoopMessage's dashboard; "
        "unset refuses every delivery.",
    )
    loopmessage_timeout_seconds: float = Field(
        default=10,
        alias="LOOPMESSAGE_TIMEOUT_SECONDS",
        gt=0,
        description="Connect and read timeout of one LoopMessage call (a send is never retried"
        " once it may have been taken).",
    )
    loopmessage_attachment_hosts: list[str] = Field(
        default_factory=lambda: ["*.loopmessage.com"],
        alias="LOOPMESSAGE_ATTACHMENT_HOSTS",
        description="Host names (`*.` for subdomains) attachment URLs may come from (JSON).",
    )
    imessage_provider: str = Field(default="gemini", alias="IMESSAGE_PROVIDER")
    imessage_model: str = Field(default="gemini-2.5-flash", alias="IMESSAGE_MODEL")
    imessage_history_messages: int = Field(
        default=20, alias="IMESSAGE_HISTORY_MESSAGES", gt=0, le=200
    )
    imessage_debounce_seconds: float = Field(
        default=2.0,
        alias="IMESSAGE_DEBOUNCE_SECONDS",
        ge=0,
        le=60,
        description="How long a reply waits for more texts of a burst before answering.",
    )
    imessage_typing_seconds: int = Field(default=8, alias="IMESSAGE_TYPING_SECONDS", ge=0, le=60)

    @field_validator(
        "face_attributes",
        "task_queues",
        "test_phone_numbers",
        "plan_caps",
        "cors_origins",
        "fetch_allowed_addresses",
        "sandbox_egress_allowlist",
        "loopmessage_attachment_hosts",
        mode="before",
    )
    @classmethod
    def _json_from_environment(cls, value: object) -> object:
        """Lists and maps arrive as JSON text in environment variables."""
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"CORS_ORIGINS entry {origin!r} is not scheme://host[:port]")
        return origins

    @field_validator("platform_url")
    @classmethod
    def _check_platform_url(cls, url: str) -> str:
        parse_url(url)
        return url

    @field_validator("sandbox_egress_allowlist")
    @classmethod
    def _check_egress_allowlist(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parse_url(url)
        return urls

    @field_validator("fetch_allowed_addresses")
    @classmethod
    def _parse_allowlist(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            parse_allow_entry(entry)
        return entries

    def fetch_allowlist(self) -> list[AllowEntry]:
        """The parsed `FETCH_ALLOWED_ADDRESSES`."""
        return [parse_allow_entry(entry) for entry in self.fetch_allowed_addresses]

    @property
    def is_production(self) -> bool:
        """True when running as the deployed service."""
        return self.app_env == "production"

    def task_secret(self) -> bytes:
        """The key that signs task bodies (the local default is refused in production)."""
        return self._secret(self.task_signing_secret, _LOCAL_TASK_SECRET, "TASK_SIGNING_SECRET")

    def code_secret(self) -> bytes:
        """The key of phone code HMACs (the local default is refused in production)."""
        return self._secret(self.phone_code_secret, _LOCAL_CODE_SECRET, "PHONE_CODE_SECRET")

    def service_secret(self) -> bytes:
        """The key of service calls and run tokens (the local default is refused in production)."""
        return self._secret(
            self.service_signing_secret, _LOCAL_SERVICE_SECRET, "SERVICE_SIGNING_SECRET"
        )

    def archetype_secret(self) -> bytes:
        """The key of archetype user ids (the local default is refused in production)."""
        return self._secret(
            self.archetype_id_secret, _LOCAL_ARCHETYPE_SECRET, "ARCHETYPE_ID_SECRET"
        )

    def _secret(self, value: SecretStr, local_default: str, name: str) -> bytes:
        secret = value.get_secret_value()
        if self.is_production and secret == local_default:
            raise RuntimeError(f"{name} must be set when APP_ENV=production")
        return secret.encode()

    def local_key_encryption_key(self) -> bytes:
        """The local key that wraps data keys of users' API keys (never in production).

        Raises:
            RuntimeError: In production, where Cloud KMS (`API_KEYS_KMS_KEY`) wraps them.
        """
        if self.is_production:
            raise RuntimeError("API_KEYS_KMS_KEY must be set when APP_ENV=production")
        import base64

        encoded = (
            self.api_keys_local_kek.get_secret_value()
            if self.api_keys_local_kek
            else _LOCAL_API_KEYS_KEK
        )
        key = base64.b64decode(encoded, validate=True)
        if len(key) != 32:
            raise RuntimeError("API_KEYS_LOCAL_KEK must be the base64 of 32 bytes")
        return key

    def configured_llm_providers(self) -> list[str]:
        """Names of the LLM providers that have credentials or an endpoint configured."""
        configured = {
            "gemini": self.gemini_api_key is not None,
            "vertexai": self.vertexai_enabled,
            "openai": self.openai_api_key is not None,
            "anthropic": self.anthropic_api_key is not None,
            "ollama": self.ollama_base_url is not None,
            "local": self.local_llm_base_url is not None,
        }
        return [name for name, present in configured.items() if present]

    def imessage_llm(self) -> tuple[str, str]:
        """The provider and model of iMessage replies (see `_feature_llm`)."""
        return self._feature_llm(self.imessage_provider, self.imessage_model, "IMESSAGE_PROVIDER")

    def archetype_llm(self) -> tuple[str, str]:
        """The provider and model of archetypes (see `_feature_llm`)."""
        return self._feature_llm(
            self.archetype_llm_provider, self.archetype_llm_model, "ARCHETYPE_LLM_PROVIDER"
        )

    def _feature_llm(self, provider: str, model: str, name: str) -> tuple[str, str]:
        """The configured provider and model, or the local model when that provider has no key.

        Outside production a provider without credentials falls back to the
        local model (provider `local`) when `LOCAL_LLM_BASE_URL` is set, so
        `make dev` works with no cloud key. Production never falls back.

        Raises:
            RuntimeError: In production, the provider has no credentials configured.
        """
        configured = self.configured_llm_providers()
        if provider in configured:
            return provider, model
        if self.is_production:
            raise RuntimeError(
                f"{name}={provider} has no credentials configured (APP_ENV=production)"
            )
        if LOCAL_LLM_PROVIDER in configured:
            return LOCAL_LLM_PROVIDER, LOCAL_LLM_MODEL
        return provider, model

    def emulator_hosts(self) -> dict[str, str]:
        """The emulator endpoints in use, keyed by service."""
        hosts = {
            "firestore": self.firestore_emulator_host,
            "auth": self.firebase_auth_emulator_host,
            "storage": self.storage_emulator_host,
            "tasks": self.tasks_emulator_host,
        }
        return {name: host for name, host in hosts.items() if host}


@cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    settings = Settings.model_validate(dict(os.environ))
    local_only = (
        settings.vertexai_base_url
        or settings.signing_credentials_file
        or settings.api_keys_kms_endpoint
    )
    if settings.is_production and (settings.emulator_hosts() or local_only):
        raise RuntimeError("emulator settings must not be set when APP_ENV=production")
    if settings.is_production and any(map(unsafe_in_production, settings.fetch_allowlist())):
        raise RuntimeError(
            "FETCH_ALLOWED_ADDRESSES must not reach loopback, link-local, unspecified or"
            " multicast addresses when APP_ENV=production"
        )
    if settings.is_production and settings.api_keys_local_kek is not None:
        raise RuntimeError("API_KEYS_LOCAL_KEK must not be set when APP_ENV=production")
    return settings
