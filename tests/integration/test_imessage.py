"""The iMessage concierge end to end: LoopMessage webhooks in, replies out.

A fake LoopMessage (both API generations, plus its attachment host) and the
fake LLM run on 127.0.0.1; the webhook, the Cloud Tasks emulator and the
worker are the real ones behind the gateway.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from shared.platform import clients, tasks
from shared.platform.config import get_settings
from tests.fakes.loopmessage import FakeLoopMessage
from tests.fakes.server import serving
from tests.integration.helpers import introduced, random_number, sign_up
from tests.integration.test_photos import jpeg
from tests.integration.test_users import close_loop

SECRET = "loop-webhook-secret"
REPLY = {"reply": "Lovely to meet you!", "profile_updates": {}}
DEBOUNCE = 1.0


def reconfigure(values: dict[str, str]) -> None:
    """Set environment values in this process and drop what was built from the old ones."""
    os.environ.update(values)
    get_settings.cache_clear()
    clients.loopmessage.cache_clear()


@pytest.fixture(scope="module")
def loop(live_stack) -> Iterator[tuple[FakeLoopMessage, str]]:
    fake = FakeLoopMessage()
    with serving(fake.app()) as url:
        values = {
            **fake.settings(url),
            "LOOPMESSAGE_WEBHOOK_SECRET": SECRET,
            "LOOPMESSAGE_ATTACHMENT_HOSTS": json.dumps(["127.0.0.1"]),
            "FETCH_ALLOWED_ADDRESSES": json.dumps([url.removeprefix("http://")]),
            "IMESSAGE_DEBOUNCE_SECONDS": str(DEBOUNCE),
        }
        reconfigure(values)
        live_stack.env.update(values)  # what functions started from their deploy env get
        try:
            yield fake, url
        finally:
            for name in values:
                os.environ.pop(name, None)
                live_stack.env.pop(name, None)
            reconfigure({})


@pytest.fixture
def fake(loop, stack) -> FakeLoopMessage:
    loop[0].reset("legacy")
    reconfigure({"LOOPMESSAGE_API": "legacy"})
    stack.llm.reply = json.dumps(REPLY)
    return loop[0]


@pytest.fixture
def current_api(fake) -> Iterator[FakeLoopMessage]:
    fake.reset("current")
    reconfigure({"LOOPMESSAGE_API": "current"})
    try:
        yield fake
    finally:
        reconfigure({"LOOPMESSAGE_API": "legacy"})


def legacy(number: str, text: str = "hello", **fields) -> dict:
    return {
        "alert_type": "message_inbound",
        "recipient": number,
        "text": text,
        "message_type": "text",
        "delivery_type": "imessage",
        "message_id": str(uuid.uuid4()),
        "webhook_id": str(uuid.uuid4()),
        "api_version": "1.0",
        "sender_name": "series.concierge",
        **fields,
    }


def post(stack, payload: dict, *, secret: str | None = SECRET, bump: bool = False):
    headers = {"Authorization": secret} if secret is not None else {}
    suffix = "?bump=true" if bump else ""
    return requests.post(
        stack.url(f"/agent/webhook{suffix}"), json=payload, headers=headers, timeout=10
    )


def wait_sent(fake: FakeLoopMessage, number: str, count: int = 1, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = fake.sent_to(number)
        if len(sent) >= count:
            return sent
        time.sleep(0.1)
    raise AssertionError(f"{len(fake.sent_to(number))} messages sent, expected {count}")


def settle() -> None:
    """Long enough for any extra reply task (debounce plus a worker run) to have sent."""
    time.sleep(DEBOUNCE + 2.5)


def conversation(number: str) -> dict:
    return clients.firestore().collection("conversations").document(number).get().to_dict() or {}


def outbound(number: str, generation: int) -> dict:
    ref = clients.firestore().document(f"conversations/{number}/messages/out-{generation}")
    return ref.get().to_dict() or {}


def user_of(number: str) -> dict:
    holder = clients.firestore().collection("user_phones").document(number).get().to_dict()
    assert holder, "not registered"
    return clients.firestore().collection("users").document(holder["userId"]).get().to_dict()


def test_direct_message_gets_one_reply(stack, fake):
    number = random_number()
    payload = legacy(number, "hi, who is this?")

    response = post(stack, payload)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "typing": 8, "read": True}
    sent = wait_sent(fake, number)
    settle()
    assert len(fake.sent_to(number)) == 1
    assert sent[0]["text"] == REPLY["reply"]
    assert sent[0]["sender_name"] == fake.sender
    assert sent[0]["reply_to_id"] == payload["message_id"]
    assert sent[0]["passthrough"] == "out-1"
    stored = outbound(number, 1)
    assert stored["status"] == "sent"
    assert stored["loopMessageId"] == sent[0]["message_id"]
    assert stored["llm"]["payer"] == "platform"


def test_an_sms_text_is_answered_without_a_threaded_reply(stack, fake):
    number = random_number()

    post(stack, legacy(number, delivery_type="sms"))

    assert "reply_to_id" not in wait_sent(fake, number)[0]


def test_unknown_number_is_registered_with_its_arrival(stack, fake):
    number = random_number()

    post(stack, legacy(number))
    wait_sent(fake, number)

    user = user_of(number)
    assert user["phone"] == number
    assert user["arrival"]["channel"] == "imessage"
    assert conversation(number)["userId"] == user["userId"]
    assert not clients.firestore().collection("accounts").document(user["userId"]).get().exists


def test_a_known_user_is_answered_as_themself(stack, fake):
    ada = sign_up(stack, name={"first": "Ada"}, location="Paris")

    post(stack, legacy(ada.phone, "hi it's me"))
    wait_sent(fake, ada.phone)

    assert conversation(ada.phone)["userId"] == ada.user_id
    assert user_of(ada.phone)["userId"] == ada.user_id
    assert '\\"first_name\\": \\"Ada\\"' in json.dumps(stack.llm.calls("gemini")[-1])


def test_an_email_texter_is_registered_by_email(stack, fake):
    email = f"Someone.{uuid.uuid4().hex[:8]}@Example.com"

    post(stack, legacy(email, "hello from my Apple ID"))
    wait_sent(fake, email.lower())

    holder = clients.firestore().collection("user_emails").document(email.lower()).get()
    user = clients.firestore().collection("users").document(holder.get("userId")).get()
    assert user.get("email") == email.lower()
    assert user.get("phone") is None


def test_agent_webhook_deploy_env_queues_the_reply(stack, fake):
    from tests.integration.test_deploy_env import standalone

    number = random_number()

    with standalone(stack, "agent_webhook") as webhook:
        response = requests.post(
            webhook + "/agent/webhook",
            json=legacy(number),
            headers={"Authorization": SECRET},
            timeout=30,
        )

    assert response.status_code == 200, response.text
    wait_sent(fake, number)


def test_group_message_gets_no_reply(stack, fake):
    number = random_number()
    group = {"group_id": str(uuid.uuid4()), "name": "Friends", "participants": [number]}

    response = post(stack, legacy(number, group=group))

    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    settle()
    assert fake.sent_to(number) == []
    assert conversation(number) == {}


@pytest.mark.parametrize("secret", ["wrong-secret", None, SECRET + " "])
def test_wrong_secret_is_refused(stack, fake, secret):
    number = random_number()

    response = post(stack, legacy(number), secret=secret)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid webhook authorization"}
    assert conversation(number) == {}


def test_a_delivery_retried_five_times_gets_one_reply(stack, fake):
    number = random_number()
    payload = legacy(number)

    answers = [post(stack, payload) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["status"] for a in answers] == ["accepted"] + ["duplicate"] * 4
    wait_sent(fake, number)
    settle()
    assert len(fake.sent_to(number)) == 1
    assert conversation(number)["generation"] == 1


def test_three_texts_in_a_burst_get_one_reply_covering_all(stack, fake):
    number = random_number()
    texts = ["hey", "I'm Ada", "I live in Paris"]

    started = time.monotonic()
    for text in texts:
        assert post(stack, legacy(number, text)).status_code == 200
    assert time.monotonic() - started < DEBOUNCE

    wait_sent(fake, number)
    settle()
    assert len(fake.sent_to(number)) == 1
    prompts = [json.dumps(c["contents"]) for c in stack.llm.calls("gemini")]
    assert len([p for p in prompts if any(text in p for text in texts)]) == 1
    assert all(text in prompts[-1] for text in texts)
    assert len(outbound(number, 3)["answers"]) == 3
    assert outbound(number, 1) == {}
    assert outbound(number, 2) == {}


def test_a_retried_worker_never_sends_twice(stack, fake):
    number = random_number()
    post(stack, legacy(number))
    wait_sent(fake, number)
    body = json.dumps({"contact": number, "generation": 1}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", tasks.SIGNATURE_HEADER: tasks.sign(body)}

    again = [
        requests.post(stack.url("/_functions/agent_worker"), data=body, headers=headers, timeout=30)
        for _ in range(3)
    ]

    assert [r.status_code for r in again] == [200] * 3
    assert len(fake.sent_to(number)) == 1


def test_a_worker_killed_while_sending_does_not_send_again(stack, fake):
    number = random_number()
    post(stack, legacy(number))
    wait_sent(fake, number)
    ref = clients.firestore().document(f"conversations/{number}/messages/out-1")
    ref.update({"status": "sending"})  # as a worker that died after deciding to send leaves it
    body = json.dumps({"contact": number, "generation": 1}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", tasks.SIGNATURE_HEADER: tasks.sign(body)}

    retried = requests.post(
        stack.url("/_functions/agent_worker"), data=body, headers=headers, timeout=30
    )

    assert retried.status_code == 200
    assert len(fake.sent_to(number)) == 1


def test_a_worker_process_killed_mid_reply_is_retried_with_one_message(stack, fake):
    """A real kill inside the model call; the Tasks emulator delivers again to a fresh process."""
    from tests.integration.test_faults import TaskProxy, kill_inside_model_call, worker

    number = random_number()
    proxy = TaskProxy()
    stack.llm.delay_seconds = 60  # holds the first worker inside its model call
    processes = []
    with serving(proxy) as proxy_url:
        try:
            processes = [worker(stack, "agent_worker", {}) for _ in range(2)]
            webhook = worker(stack, "agent_webhook", {"TASKS_TARGET_BASE_URL": proxy_url})
            processes.append(webhook)
            first, fresh = processes[0], processes[1]
            proxy.target = first.url()

            accepted = requests.post(
                f"{webhook.url()}/agent/webhook",
                json=legacy(number),
                headers={"Authorization": SECRET},
                timeout=30,
            )
            assert accepted.json()["status"] == "accepted", accepted.text
            kill_inside_model_call(stack, proxy, first, fresh)

            wait_sent(fake, number)
            settle()
        finally:
            for process in processes:
                process.stop()

    assert proxy.retries[:2] == [0, 1]
    assert len(stack.llm.calls("gemini")) == 2  # the killed call, and the retry's
    assert len(fake.sent_to(number)) == 1
    assert outbound(number, 1)["status"] == "sent"


def test_a_transient_send_failure_is_retried_once_and_a_refusal_is_not(stack, fake):
    retried, refused = random_number(), random_number()
    fake.fail_next(400, 1010)  # "Unable to send message ... re-try after a short delay"

    post(stack, legacy(retried))
    wait_sent(fake, retried)
    fake.fail_next(402, 400)  # legacy: no credits left
    post(stack, legacy(refused))
    settle()

    assert len(fake.sent_to(retried)) == 1
    assert outbound(retried, 1)["status"] == "sent"
    assert fake.sent_to(refused) == []
    assert outbound(refused, 1)["status"] == "failed"
    assert outbound(refused, 1)["errorCode"] == 400


@pytest.mark.parametrize("status", [200, 502])
def test_a_send_that_may_have_been_taken_is_never_sent_again(stack, fake, status):
    number = random_number()
    reconfigure({"LOOPMESSAGE_TIMEOUT_SECONDS": "1"})
    try:
        # Taken, then answered too late (a read timeout) or by a proxy's 502.
        fake.take_without_answer(delay=1.5 if status == 200 else 0.0, status=status)
        post(stack, legacy(number))
        wait_sent(fake, number)
        settle()
    finally:
        os.environ.pop("LOOPMESSAGE_TIMEOUT_SECONDS")
        reconfigure({})

    assert len(fake.sent_to(number)) == 1
    assert outbound(number, 1)["status"] == "unconfirmed"
    delivered = post(
        stack,
        {
            "alert_type": "message_sent",
            "recipient": number,
            "success": True,
            "message_id": fake.sent_to(number)[0]["message_id"],
            "passthrough": "out-1",
            "webhook_id": str(uuid.uuid4()),
        },
    )
    assert delivered.json() == {"status": "updated"}
    assert outbound(number, 1)["delivery"]["status"] == "sent"


def test_an_image_attachment_becomes_the_profile_picture(stack, fake, loop):
    number = random_number()
    fake.files["face.jpg"] = (jpeg(gps=True), "image/jpeg")
    attachment = f"{loop[1]}/attachments/face.jpg"

    post(stack, legacy(number, "here's me", attachments=[attachment], message_type="attachments"))
    wait_sent(fake, number)

    user = user_of(number)
    assert user["profilePic"].startswith("/storage/profile-image/")
    image = requests.get(stack.url(user["profilePic"]), timeout=10)
    assert image.status_code == 200
    assert b"TestCam" not in image.content
    prompt = json.dumps(stack.llm.calls("gemini")[-1]["contents"])
    assert "now their profile picture" in prompt


def test_attachments_from_other_hosts_are_not_fetched(stack, fake):
    number = random_number()

    post(stack, legacy(number, "look", attachments=["https://example.com/x.jpg"]))
    wait_sent(fake, number)

    assert user_of(number)["profilePic"] is None
    assert "could not be opened" in json.dumps(stack.llm.calls("gemini")[-1]["contents"])


def test_allowlisted_profile_updates_are_applied(stack, fake):
    number = random_number()
    stack.llm.reply = json.dumps(
        {
            "reply": "Nice to meet you, Ada!",
            "profile_updates": {"first_name": "Ada", "location": "Paris", "elo": 9999},
        }
    )

    post(stack, legacy(number, "I'm Ada from Paris"))
    wait_sent(fake, number)

    user = user_of(number)
    assert user["name"]["first"] == "Ada"
    assert user["location"] == "Paris"
    assert user["elo"] == 1600


def test_current_api_payloads_and_sending(stack, current_api):
    number = random_number()
    payload = {
        "event": "message_inbound",
        "contact": number,
        "text": "hello from the new API",
        "message_type": "text",
        "channel": "imessage",
        "message_id": str(uuid.uuid4()),
        "webhook_id": str(uuid.uuid4()),
        "api_version": "1.0",
        "sender": "sender-id",
        "language": {"code": "en", "name": "English"},
    }

    response = post(stack, payload)

    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    sent = wait_sent(current_api, number)
    assert sent[0]["contact"] == number
    assert sent[0]["api"] == "current"
    assert "recipient" not in sent[0]
    assert current_api.typing[0]["message_id"] == payload["message_id"]


def test_current_api_group_messages_are_ignored(stack, current_api):
    number = random_number()
    payload = {
        "event": "message_inbound",
        "contact": number,
        "text": "hi all",
        "message_id": str(uuid.uuid4()),
        "webhook_id": str(uuid.uuid4()),
        "group": {"id": str(uuid.uuid4()), "participants": [number, random_number()]},
    }

    assert post(stack, payload).json() == {"status": "ignored"}
    settle()
    assert current_api.sent_to(number) == []


def test_status_events_update_the_reply(stack, fake):
    number = random_number()
    post(stack, legacy(number))
    loop_id = wait_sent(fake, number)[0]["message_id"]

    sent = post(
        stack,
        {
            "alert_type": "message_sent",
            "recipient": number,
            "message_id": loop_id,
            "webhook_id": str(uuid.uuid4()),
            "passthrough": "out-1",
            "success": True,
        },
    )
    reacted = post(
        stack,
        {
            "event": "message_reaction",
            "contact": number,
            "message_id": loop_id,
            "webhook_id": str(uuid.uuid4()),
            "reaction": "love",
        },
    )

    assert sent.json() == {"status": "updated"}
    assert reacted.json() == {"status": "updated"}
    stored = outbound(number, 1)
    assert stored["delivery"]["status"] == "sent"
    assert stored["reaction"] == "love"


def test_bump_reprocesses_unanswered_messages(stack, fake):
    number = random_number()
    payload = legacy(number, "are you there?")
    stack.llm.reply = "not the structured answer"
    post(stack, payload)
    settle()
    assert fake.sent_to(number) == []
    stack.llm.reply = json.dumps(REPLY)

    again = post(stack, payload)
    bumped = post(stack, payload, bump=True)

    assert again.json()["status"] == "duplicate"
    assert bumped.json()["status"] == "accepted"
    wait_sent(fake, number)
    settle()
    assert len(fake.sent_to(number)) == 1
    assert "are you there?" in json.dumps(stack.llm.calls("gemini")[-1]["contents"])


@pytest.mark.parametrize(
    "payload",
    [
        {"recipient": "+12015550123", "webhook_id": "x"},
        {"alert_type": "message_inbound", "recipient": "+12015550123"},
        {"alert_type": "message_inbound", "recipient": "a/b", "webhook_id": "w"},
    ],
)
def test_malformed_deliveries_are_422(stack, fake, payload):
    response = post(stack, payload)

    assert response.status_code == 422


def test_close_loop_notifies_the_referrer_once_over_imessage(stack, fake):
    alice, bob = introduced(stack)

    answers = [close_loop(stack, bob, alice.user_id, bob.user_id) for _ in range(3)]

    assert [a.status_code for a in answers] == [200] * 3
    sent = wait_sent(fake, alice.phone)
    settle()
    assert len(fake.sent_to(alice.phone)) == 1
    assert "accepted" in sent[0]["text"]
    assert fake.sent_to(bob.phone) == []
    notice_id = f"{answers[0].json()['matchId']}-referrer"
    notice = clients.firestore().collection("notifications").document(notice_id).get().to_dict()
    assert notice["status"] == "sent"
    assert notice["messageId"] == sent[0]["message_id"]

    delivered = post(
        stack,
        {
            "event": "message_delivered",
            "contact": alice.phone,
            "message_id": sent[0]["message_id"],
            "webhook_id": str(uuid.uuid4()),
            "passthrough": sent[0]["passthrough"],
        },
    )

    assert delivered.json() == {"status": "updated"}
    notice = clients.firestore().collection("notifications").document(notice_id).get().to_dict()
    assert notice["delivery"]["status"] == "delivered"


@pytest.mark.parametrize(
    ("api", "status", "code", "retried"),
    [
        ("legacy", 400, 1010, True),
        ("legacy", 400, 330, True),  # legacy: sending too frequently
        ("current", 400, 330, False),  # current: account suspended due to debt
        ("current", 400, 1000, True),
        ("current", 402, 550, False),
        ("legacy", 400, 270, False),
        ("current", 500, 100, True),
        ("current", 429, 100, True),
    ],
)
def test_loopmessage_error_codes_map_to_retry_or_not(api, status, code, retried):
    from requests import Session

    from shared.platform.config import Settings
    from shared.platform.errors import Unavailable
    from shared.platform.loopmessage import LoopMessageClient, Refused

    fake = FakeLoopMessage(api=api)
    with serving(fake.app()) as url:
        settings = Settings.model_validate(fake.settings(url))
        client = LoopMessageClient(settings, Session())
        fake.fail_next(status, code)

        with pytest.raises(Unavailable if retried else Refused):
            client.send("+12015550123", "hi")
        sent = client.send("+12015550123", "hi")

    assert sent.message_id == fake.sent[0]["message_id"]


def loop_client(fake: FakeLoopMessage, url: str):
    from requests import Session

    from shared.platform.config import Settings
    from shared.platform.loopmessage import LoopMessageClient

    settings = Settings.model_validate({**fake.settings(url), "LOOPMESSAGE_TIMEOUT_SECONDS": "0.5"})
    return LoopMessageClient(settings, Session())


def test_loopmessage_sends_are_never_retried_by_the_client():
    from shared.platform.errors import Unavailable
    from shared.platform.loopmessage import MaybeSent

    fake = FakeLoopMessage()
    with serving(fake.app()) as url:
        client = loop_client(fake, url)
        fake.take_without_answer(delay=1.0)
        with pytest.raises(MaybeSent):
            client.send("+12015550123", "late")
        fake.take_without_answer(status=504)
        with pytest.raises(MaybeSent):
            client.send("+12015550123", "proxy")
        fake.fail_next(503, 100)  # LoopMessage's own refusal: it did not take the message
        with pytest.raises(Unavailable):
            client.send("+12015550123", "refused")
        assert [m["text"] for m in fake.sent] == ["late", "proxy"]
    # Nobody listens any more: the connection is refused, nothing was taken.
    with pytest.raises(Unavailable):
        client.send("+12015550123", "nobody")
