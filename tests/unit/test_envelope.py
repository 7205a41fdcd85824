"""Envelope encryption of users' API keys with the local key-encryption key, and its guards."""

from __future__ import annotations

import pytest

from shared.platform import clients, envelope
from shared.platform.config import get_settings
from shared.platform.errors import Unavailable

SECRET = "sk-a-users-own-key-0123456789"


@pytest.fixture
def environment(monkeypatch):
    def apply(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        clients.reset()

    for name in ("API_KEYS_KMS_KEY", "API_KEYS_KMS_ENDPOINT", "API_KEYS_LOCAL_KEK"):
        monkeypatch.delenv(name, raising=False)
    clients.reset()
    yield apply
    monkeypatch.undo()
    clients.reset()


def test_a_sealed_secret_opens_only_in_its_own_context(environment):
    sealed = envelope.seal(SECRET, "accounts/alice/ownApiKeys/openai")

    assert envelope.open_sealed(sealed, "accounts/alice/ownApiKeys/openai") == SECRET
    assert SECRET.encode() not in sealed["ciphertext"] + sealed["wrappedKey"]
    assert sealed["kek"] == envelope.LOCAL_KEK
    with pytest.raises(Unavailable):
        envelope.open_sealed(sealed, "accounts/mallory/ownApiKeys/openai")
    with pytest.raises(Unavailable):
        envelope.open_sealed(sealed, "accounts/alice/ownApiKeys/anthropic")


def test_each_secret_has_its_own_data_key(environment):
    one = envelope.seal(SECRET, "c")
    two = envelope.seal(SECRET, "c")

    assert one["wrappedKey"] != two["wrappedKey"]
    assert one["ciphertext"] != two["ciphertext"]


def test_tampering_and_another_local_key_are_refused(environment):
    sealed = envelope.seal(SECRET, "c")
    tampered = {
        **sealed,
        "ciphertext": bytes([sealed["ciphertext"][0] ^ 1]) + sealed["ciphertext"][1:],
    }

    with pytest.raises(Unavailable):
        envelope.open_sealed(tampered, "c")
    environment(API_KEYS_LOCAL_KEK="YW5vdGhlci1sb2NhbC1rZXktb2YtMzItYnl0ZXMhISE=")
    with pytest.raises(Unavailable):
        envelope.open_sealed(sealed, "c")


LOCAL_ONLY = (
    "FIRESTORE_EMULATOR_HOST",
    "FIREBASE_AUTH_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
    "VERTEXAI_BASE_URL",
    "SIGNING_CREDENTIALS_FILE",
    "FETCH_ALLOWED_ADDRESSES",
)


def test_production_refuses_a_local_key(environment, monkeypatch):
    for name in LOCAL_ONLY:
        monkeypatch.delenv(name, raising=False)
    environment(
        APP_ENV="production", API_KEYS_LOCAL_KEK="YW5vdGhlci1sb2NhbC1rZXktb2YtMzItYnl0ZXMhISE="
    )

    with pytest.raises(RuntimeError, match="API_KEYS_LOCAL_KEK"):
        get_settings()


def test_production_without_a_kms_key_seals_nothing(environment, monkeypatch):
    for name in LOCAL_ONLY:
        monkeypatch.delenv(name, raising=False)
    environment(APP_ENV="production")

    with pytest.raises(RuntimeError, match="API_KEYS_KMS_KEY"):
        envelope.seal(SECRET, "c")


def test_the_kms_key_setting_is_a_key_name(environment):
    environment(API_KEYS_KMS_KEY="not-a-key")

    with pytest.raises(ValueError, match="API_KEYS_KMS_KEY"):
        get_settings()
