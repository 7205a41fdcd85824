"""A fake Cloud KMS speaking the REST wire format of `cryptoKeys.encrypt` and `.decrypt`.

`POST /v1/{cryptoKey}:encrypt` with base64 `plaintext` and
`additionalAuthenticatedData` answers base64 `ciphertext` (wrapped under a
key of its own, the associated data bound); `:decrypt` reverses it and
answers 400 `INVALID_ARGUMENT` when the ciphertext or the associated data
do not match, as Cloud KMS does. Records each call's method and key name.
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass, field

import flask
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass
class FakeKms:
    """State of the fake key service."""

    key: bytes = field(default_factory=lambda: AESGCM.generate_key(bit_length=256))
    calls: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> flask.Flask:
        app = flask.Flask("fake-kms")

        @app.post("/v1/<path:target>")
        def call(target: str) -> flask.Response:
            name, _, method = target.rpartition(":")
            body = flask.request.get_json(force=True)
            aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
            with self._lock:
                self.calls.append((method, name))
            cipher = AESGCM(self.key)
            if method == "encrypt":
                nonce = os.urandom(12)
                sealed = nonce + cipher.encrypt(nonce, base64.b64decode(body["plaintext"]), aad)
                return flask.jsonify(
                    name=f"{name}/cryptoKeyVersions/1",
                    ciphertext=base64.b64encode(sealed).decode(),
                )
            if method == "decrypt":
                sealed = base64.b64decode(body["ciphertext"])
                try:
                    plaintext = cipher.decrypt(sealed[:12], sealed[12:], aad)
                except InvalidTag:
                    response = flask.jsonify(
                        error={
                            "code": 400,
                            "message": "Decryption failed",
                            "status": "INVALID_ARGUMENT",
                        }
                    )
                    response.status_code = 400
                    return response
                return flask.jsonify(plaintext=base64.b64encode(plaintext).decode())
            flask.abort(404)

        return app
