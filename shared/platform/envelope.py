"""Envelope encryption of small secrets (users' own LLM API keys).

Each secret gets its own random 256-bit data key and is sealed with
AES-256-GCM under it (`cryptography`'s AESGCM, a random 96-bit nonce). The
data key is then wrapped by the key-encryption key: Cloud KMS
(`API_KEYS_KMS_KEY`; the key never leaves KMS) in production, the local key
(`API_KEYS_LOCAL_KEK`, or a built-in one) in `make dev` and tests, never in
production. Both layers bind `context` (the owner and the provider) as
associated data, so a sealed secret copied to another owner or provider does
not open. Only the sealed form is ever stored; the plaintext lives in memory
for the one call that needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypedDict

from shared.platform import clients
from shared.platform.config import get_settings
from shared.platform.errors import Unavailable

LOCAL_KEK = "local"
_NONCE_BYTES = 12


class Sealed(TypedDict):
    """A sealed secret as stored (Firestore keeps the bytes as bytes)."""

    kek: str  # "local", or the Cloud KMS key that wrapped the data key
    wrappedKey: bytes
    nonce: bytes
    ciphertext: bytes


def seal(plaintext: str, context: str) -> Sealed:
    """Encrypt `plaintext` under a fresh data key wrapped by the key-encryption key.

    Raises:
        Unavailable: Cloud KMS did not wrap the data key.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aad = context.encode()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad)
    kek, wrapped = _wrap(data_key, aad)
    return Sealed(kek=kek, wrappedKey=wrapped, nonce=nonce, ciphertext=ciphertext)


def open_sealed(sealed: Mapping[str, Any], context: str) -> str:
    """Decrypt what `seal` produced for the same `context`.

    Raises:
        Unavailable: The data key could not be unwrapped (KMS down, key
            disabled, or the local key changed) or the secret did not verify.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aad = context.encode()
    data_key = _unwrap(str(sealed["kek"]), bytes(sealed["wrappedKey"]), aad)
    try:
        plaintext = AESGCM(data_key).decrypt(
            bytes(sealed["nonce"]), bytes(sealed["ciphertext"]), aad
        )
    except InvalidTag as exc:
        raise Unavailable("A stored secret did not verify") from exc
    return plaintext.decode()


def _wrap(data_key: bytes, aad: bytes) -> tuple[str, bytes]:
    kms_key = get_settings().api_keys_kms_key
    if kms_key is None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(_NONCE_BYTES)
        local = AESGCM(get_settings().local_key_encryption_key())
        return LOCAL_KEK, nonce + local.encrypt(nonce, data_key, aad)
    from google.api_core import exceptions

    try:
        response = clients.kms().encrypt(
            request={"name": kms_key, "plaintext": data_key, "additional_authenticated_data": aad}
        )
    except exceptions.GoogleAPIError as exc:
        raise Unavailable("The key service did not wrap the data key") from exc
    return kms_key, bytes(response.ciphertext)


def _unwrap(kek: str, wrapped: bytes, aad: bytes) -> bytes:
    if kek == LOCAL_KEK:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        local = AESGCM(get_settings().local_key_encryption_key())
        try:
            return local.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise Unavailable("A stored secret's data key did not unwrap") from exc
    from google.api_core import exceptions

    try:
        response = clients.kms().decrypt(
            request={"name": kek, "ciphertext": wrapped, "additional_authenticated_data": aad}
        )
    except exceptions.GoogleAPIError as exc:
        raise Unavailable("The key service did not unwrap the data key") from exc
    return bytes(response.plaintext)
