"""Regressions from the outside review: each class of defect, tried through the gateway.

Accounts and profiles in either order, nulls, values Firestore or JSON
cannot hold, unchecked references, email claiming, image bombs, contention,
money, uncleaned uploads, and the HTTP edges (HEAD, media types, gateway
errors).
"""

from __future__ import annotations

import functools
import io
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import ExifTags, Image

from devstack.tokens import mint_token
from shared.platform import clients
from tests.integration.helpers import phone_token, random_number, sign_up, web_sign_up
from tests.integration.test_photos import BUCKET, jpeg, upload

JSON = {"Content-Type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin(unique: str) -> dict[str, str]:
    return bearer(mint_token(f"admin-{unique}@example.com", admin=True).id_token)


def profile_doc(user_id: str) -> dict | None:
    return clients.firestore().collection("users").document(user_id).get().to_dict()


# Accounts and profiles: separate documents, either order of first calls.


def test_account_first_then_profile_works(stack, unique):
    user = mint_token(f"web-{unique}@example.com")
    headers = bearer(user.id_token)

    account = requests.get(stack.url("/users/me"), headers=headers, timeout=10)
    created = requests.post(
        stack.url("/users"), json={"name": {"first": "Web"}}, headers=headers, timeout=10
    )
    read = requests.get(stack.url(f"/users/{user.uid}"), headers=headers, timeout=10)
    update = requests.put(
        stack.url(f"/users/{user.uid}"), json={"bio": "hi"}, headers=headers, timeout=10
    )
    public = requests.get(stack.url(f"/users/{user.uid}/public"), timeout=10)

    assert account.status_code == 200
    assert (created.status_code, read.status_code, update.status_code) == (201, 200, 200)
    assert public.json()["bio"] == "hi"
    assert "basicInfo" not in profile_doc(user.uid)
    stored_account = clients.firestore().collection("accounts").document(user.uid).get()
    assert "name" not in stored_account.to_dict()


def test_profile_first_then_account_works(stack, unique):
    alice = web_sign_up(stack, f"alice-{unique}@example.com")

    account = requests.get(stack.url("/users/me"), headers=alice.headers, timeout=10)

    assert account.status_code == 200
    assert account.json()["userId"] == alice.user_id
    assert "usageInfo" not in profile_doc(alice.user_id)


def test_legacy_account_only_user_document_does_not_block_the_profile(stack, unique):
    user = mint_token(f"legacy-{unique}@example.com")
    clients.firestore().collection("users").document(user.uid).set(
        {"basicInfo": {"email": None, "displayName": None, "createdAt": 1}, "usageInfo": {}}
    )
    headers = bearer(user.id_token)

    before = requests.get(stack.url(f"/users/{user.uid}"), headers=headers, timeout=10)
    created = requests.post(stack.url("/users"), json={}, headers=headers, timeout=10)
    after = requests.get(stack.url(f"/users/{user.uid}"), headers=headers, timeout=10)

    assert before.status_code == 404
    assert created.status_code == 201, created.text
    assert after.status_code == 200


# Nulls: refused where the User model has no null, accepted where it has.


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": None}, ["body", "name"]),
        ({"name": {"first": None}}, ["body", "name", "first"]),
        ({"metadata": None}, ["body", "metadata"]),
        ({"metadata": {"network": None}}, ["body", "metadata", "network"]),
        ({"metadata": {"notes": None}}, ["body", "metadata", "notes"]),
        ({"metadata": {"archetype": None}}, ["body", "metadata", "archetype"]),
        ({"elo": None}, ["body", "elo"]),
        ({"roles": None}, ["body", "roles"]),
    ],
)
def test_null_in_a_field_without_null_is_422_and_the_profile_still_reads(stack, body, loc):
    alice = sign_up(stack)
    path = stack.url(f"/users/{alice.user_id}")

    response = requests.put(path, json=body, headers=alice.headers, timeout=10)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert requests.get(path, headers=alice.headers, timeout=10).status_code == 200


def test_null_clears_an_optional_field(stack):
    alice = sign_up(stack, bio="hello")

    response = requests.put(
        stack.url(f"/users/{alice.user_id}"), json={"bio": None}, headers=alice.headers, timeout=10
    )

    assert response.status_code == 200
    assert response.json()["bio"] is None


# Values JSON or Firestore cannot hold: 422 before anything is written.

DEEP = "[" * 15_000 + "]" * 15_000


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (
            '{"metadata": {"network": [{"name": "a", "email": "b", "timeSpent": 1e999}]}}',
            ["body", "metadata", "network", 0, "timeSpent"],
        ),
        ('{"bio": NaN}', ["body", "bio"]),
        ('{"bio": Infinity}', ["body", "bio"]),
        ('{"age": 100000000000000000000000000000}', ["body", "age"]),
        ('{"bio": "\\ud800"}', ["body", "bio"]),
        ('{"\\udfff": 1}', ["body", "\udfff"]),
        (DEEP, ["body"]),
        ("[" * 40 + "]" * 40, ["body", *[0] * 33]),
    ],
)
def test_profile_values_json_cannot_hold_are_422(stack, raw, loc):
    alice = sign_up(stack, bio="kept")
    before = profile_doc(alice.user_id)

    response = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        data=raw.encode(),
        headers={**alice.headers, **JSON},
        timeout=10,
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert profile_doc(alice.user_id) == before


@pytest.mark.parametrize(
    "metadata",
    [
        {"": 1},
        {"__name__": 1},
        {"nested": {"": "x"}},
        {"matrix": [[1, 2], [3]]},
        functools.reduce(lambda inner, _: {"k": inner}, range(17), {}),
        {"k" * 300: 1},
    ],
)
def test_usage_metadata_firestore_cannot_hold_is_422_and_charges_nothing(stack, unique, metadata):
    user = mint_token(f"u-{unique}@example.com")
    headers = bearer(user.id_token)
    requests.get(stack.url("/users/me"), headers=headers, timeout=10)

    response = requests.post(
        stack.url("/users/me/usage"),
        json={"responseCost": 0.1, "metadata": metadata},
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 422, response.text
    me = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    assert me["usageInfo"]["spendRemaining"] == 1.0
    ledger = clients.firestore().collection("accounts").document(user.uid).collection("usage")
    assert not list(ledger.stream())


def test_chat_schema_firestore_cannot_hold_is_422_and_writes_no_ticket(stack):
    from tests.integration.test_chat import chat_body

    alice = sign_up(stack)
    body = chat_body(responseSchema={"type": "object", "properties": {"": {"type": "string"}}})

    response = requests.post(stack.url("/chat"), json=body, headers=alice.headers, timeout=10)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "responseSchema"]
    assert not list(clients.firestore().collection("tickets").stream())


@pytest.mark.parametrize("path", ["/users", "/users/me/usage", "/log/client", "/chat"])
def test_deep_json_is_422_on_any_route(stack, path):
    alice = sign_up(stack)

    deep = "[" * 5_000 + "]" * 5_000  # deeper than Python's recursion limit, under every body cap

    response = requests.post(
        stack.url(path), data=deep.encode(), headers={**alice.headers, **JSON}, timeout=10
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/users/upload-photo", {"data": {"user_id": "a/b"}}),
        ("POST", "/users/update-profile-picture", {"data": {"user_id": "../x", "image_url": "u"}}),
        ("POST", "/users/analyze-face?user_id=__x__&image_url=u", {}),
        ("POST", "/users/close-loop?sourceId=a/b&targetId=c", {"json": {"outcome": "accepted"}}),
    ],
)
def test_ids_in_forms_and_queries_firestore_cannot_hold_are_422(stack, method, path, kwargs):
    alice = sign_up(stack)
    if "upload-photo" in path:
        kwargs = {**kwargs, "files": {"file": ("p.jpg", jpeg(), "image/jpeg")}}

    response = requests.request(
        method, stack.url(path), headers=alice.headers, timeout=10, **kwargs
    )

    assert response.status_code == 422, response.text


# References: profilePic names a cleaned image of ours that belongs to the user.


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "https://tracker.example.com/pixel.gif", "gs://other/x.jpg"]
)
def test_profile_pic_outside_our_bucket_is_422(stack, url):
    alice = sign_up(stack)
    token = phone_token(stack, random_number())["token"]

    updated = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"profilePic": url},
        headers=alice.headers,
        timeout=10,
    )
    created = requests.post(
        stack.url("/users"), json={"profilePic": url}, headers=bearer(token), timeout=10
    )

    assert (updated.status_code, created.status_code) == (422, 422)
    assert updated.json()["detail"][0]["loc"] == ["body", "profilePic"]
    assert profile_doc(alice.user_id)["profilePic"] is None


def test_another_users_image_as_profile_pic_is_403(stack):
    alice, bob = sign_up(stack), sign_up(stack)
    bobs = upload(stack, bob, jpeg()).json()["image_url"]

    updated = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"profilePic": bobs},
        headers=alice.headers,
        timeout=10,
    )

    assert updated.status_code == 403


def test_own_cleaned_image_as_profile_pic_is_accepted(stack):
    alice = sign_up(stack)
    mine = upload(stack, alice, jpeg()).json()["image_url"]

    updated = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"profilePic": "http://app.example.com" + mine},
        headers=alice.headers,
        timeout=10,
    )

    assert updated.status_code == 200
    assert updated.json()["profilePic"] == mine


# Email claiming: only a verified email, and nobody else's id disclosed.


def test_unverified_email_is_not_claimed(stack, unique):
    email = f"victim-{unique}@example.com"
    squatter = mint_token(email, verified=False)
    phone_user = sign_up(stack)

    created = requests.post(
        stack.url("/users"), json={}, headers=bearer(squatter.id_token), timeout=10
    )
    claim = requests.put(
        stack.url(f"/users/{squatter.uid}"),
        json={"email": email},
        headers=bearer(squatter.id_token),
        timeout=10,
    )
    by_phone_user = requests.put(
        stack.url(f"/users/{phone_user.user_id}"),
        json={"email": email},
        headers=phone_user.headers,
        timeout=10,
    )
    owner = mint_token(f"other-{unique}@example.com", verified=True)

    assert created.status_code == 201
    assert created.json()["email"] is None
    assert (claim.status_code, by_phone_user.status_code) == (403, 403)
    check = requests.get(
        stack.url("/users/check-email"),
        params={"email": email},
        headers=bearer(owner.id_token),
        timeout=10,
    )
    assert check.json() == {"exists": False, "userId": None, "hasCompleteProfile": False}


def test_verified_email_is_claimed_on_creation(stack, unique):
    alice = web_sign_up(stack, f"real-{unique}@example.com")

    assert profile_doc(alice.user_id)["email"] == f"real-{unique}@example.com"


# Image bombs: refused from the header, before decoding.


def png_bomb(side: int = 12_500) -> bytes:
    """A valid greyscale PNG of side x side black pixels, compressed to a few hundred KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding(stack):
    alice = sign_up(stack)
    bomb = png_bomb()
    assert len(bomb) < 1_000_000
    assert Image.open(io.BytesIO(bomb)).size == (12_500, 12_500)

    response = upload(stack, alice, bomb, name="bomb.png")

    assert response.status_code == 422
    assert "pixels" in response.json()["detail"][0]["msg"]
    assert not list(
        clients.storage().bucket(BUCKET).list_blobs(prefix=f"profiles/{alice.user_id}/")
    )


# Contention: the loser answers within seconds with the right status.


def test_twenty_concurrent_creations_with_one_email_give_one_201(stack, unique):
    headers = admin(unique)
    email = f"race-{unique}@example.com"

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(
                    stack.url("/users"), json={"email": email}, headers=headers, timeout=15
                ),
                range(20),
            )
        )

    assert sorted(a.status_code for a in answers) == [201] + [409] * 19
    holders = clients.firestore().collection("user_emails").document(email).get().to_dict()
    winner = next(a for a in answers if a.status_code == 201).json()["userId"]
    assert holders == {"userId": winner}
    assert len(list(clients.firestore().collection("users").stream())) == 1


def test_twenty_concurrent_wrong_codes_answer_422_and_burn_the_code(stack):
    phone = random_number()
    requests.post(stack.url("/auth/send-code"), json={"phone": phone}, timeout=10)
    right = stack.twilio.last_code(phone)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(
                    stack.url("/auth/verify-code"),
                    json={"phone": phone, "code": wrong},
                    timeout=15,
                ),
                range(20),
            )
        )
    late = requests.post(
        stack.url("/auth/verify-code"), json={"phone": phone, "code": right}, timeout=10
    )

    assert {a.status_code for a in answers} == {422}
    assert late.status_code == 422
    record = clients.firestore().collection("phone_codes").document(phone).get().to_dict()
    assert record["attempts"] == 5
    assert "codeHash" not in record


# Money: integer micro-dollars, the ledger sum equals the spend, exhausted is 402.


def test_ten_dimes_spend_exactly_one_dollar_and_the_eleventh_is_402(stack, unique):
    user = mint_token(f"m-{unique}@example.com")
    headers = bearer(user.id_token)
    requests.get(stack.url("/users/me"), headers=headers, timeout=10)

    answers = [
        requests.post(
            stack.url("/users/me/usage"), json={"responseCost": 0.1}, headers=headers, timeout=10
        )
        for _ in range(11)
    ]

    assert [a.status_code for a in answers] == [200] * 10 + [402]
    assert answers[9].json()["usageInfo"]["spendRemaining"] == 0
    ledger = clients.firestore().collection("accounts").document(user.uid).collection("usage")
    assert sum(e.to_dict()["costMicros"] for e in ledger.stream()) == 1_000_000


def test_a_charge_above_what_remains_takes_only_the_rest(stack, unique):
    user = mint_token(f"r-{unique}@example.com")
    headers = bearer(user.id_token)
    requests.get(stack.url("/users/me"), headers=headers, timeout=10)

    response = requests.post(
        stack.url("/users/me/usage"), json={"responseCost": 2.5}, headers=headers, timeout=10
    )

    assert response.json()["usageInfo"]["spendRemaining"] == 0
    ledger = clients.firestore().collection("accounts").document(user.uid).collection("usage")
    [entry] = [e.to_dict() for e in ledger.stream()]
    assert (entry["costMicros"], entry["reportedCostMicros"]) == (1_000_000, 2_500_000)


# Uncleaned uploads: neither served nor accepted until the finalize handler cleaned them.


def test_a_signed_upload_is_served_and_accepted_only_once_cleaned(stack):
    # The finalize event cleans the object within moments, so every answer from
    # the moment of the upload on is either a refusal or the cleaned image.
    alice = sign_up(stack)
    issued = requests.post(
        stack.url("/storage/signed-url"),
        json={"fileName": "me.jpg", "contentType": "image/jpeg", "bucketName": BUCKET},
        headers=alice.headers,
        timeout=10,
    ).json()
    requests.put(
        issued["signedUrl"], data=jpeg(gps=True), headers={"Content-Type": "image/jpeg"}, timeout=10
    ).raise_for_status()

    served_statuses, picture_statuses = set(), set()
    deadline = time.monotonic() + 30
    while 200 not in picture_statuses and time.monotonic() < deadline:
        served = requests.get(stack.url(issued["publicUrl"]), timeout=10)
        served_statuses.add(served.status_code)
        if served.status_code == 200:
            exif = Image.open(io.BytesIO(served.content)).getexif()
            assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
        picture = requests.post(
            stack.url("/users/update-profile-picture"),
            data={"user_id": alice.user_id, "image_url": issued["publicUrl"]},
            headers=alice.headers,
            timeout=10,
        )
        picture_statuses.add(picture.status_code)
        if picture.status_code == 200:
            blob = clients.storage().bucket(BUCKET).get_blob(issued["objectName"])
            assert blob.metadata == {"cleaned": "1"}

    assert served_statuses <= {404, 200}
    assert picture_statuses <= {409, 200}
    assert 200 in picture_statuses


# HTTP edges: HEAD, media types, and the gateway's own errors as JSON.


def test_head_on_a_get_route_answers_like_get_without_a_body(stack):
    alice = sign_up(stack)

    response = requests.head(stack.url(f"/users/{alice.user_id}/public"), timeout=10)

    assert response.status_code == 200
    assert response.content == b""


def test_json_route_refuses_text_plain_with_415(stack):
    alice = sign_up(stack)

    response = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        data='{"bio": "x"}',
        headers={**alice.headers, "Content-Type": "text/plain"},
        timeout=10,
    )

    assert response.status_code == 415
    assert response.json() == {"detail": "Content-Type must be application/json"}


def test_gateway_errors_are_json(stack):
    response = requests.request("PROPFIND", stack.url("/users/x"), timeout=10)

    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


# Found by the fuzzing suite.


def test_check_email_with_a_slash_is_simply_not_registered(stack):
    alice = sign_up(stack)

    response = requests.get(
        stack.url("/users/check-email"),
        params={"email": "/d&u49sp|l@aarfnds0.net"},
        headers=alice.headers,
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["exists"] is False


@pytest.mark.parametrize("field", ["name", "description", "code", "tools", "swaggerSpecs"])
def test_agent_update_refuses_null_where_an_agent_has_none(stack, unique, field):
    user = mint_token(f"agent-{unique}@example.com")
    headers = bearer(user.id_token)
    agent = requests.post(
        stack.url("/agents"),
        json={"name": "a", "code": "async def run(input_dict, tools):\n    return {}\n"},
        headers=headers,
        timeout=10,
    ).json()
    path = stack.url(f"/agents/{agent['_id']}")

    response = requests.put(path, json={field: None}, headers=headers, timeout=10)

    assert response.status_code == 422
    assert requests.get(path, headers=headers, timeout=10).status_code == 200
