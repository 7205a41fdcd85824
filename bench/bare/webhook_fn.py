"""Baseline for the LoopMessage webhook: the same Firestore commit and Cloud Tasks call, bare.

Checks the secret, creates the delivery's event document, stores the
message and bumps the conversation in one batch, queues a delayed task for
the reply, and acknowledges: what `POST /agent/webhook` does for a new
inbound text, without our router, models or compare-and-set.
"""

import hmac
import json
import os
from datetime import UTC, datetime, timedelta

import grpc
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import timestamp_pb2

_db = None
_tasks = None


def _clients():
    global _db, _tasks  # noqa: PLW0603 - a bare function caches its clients like any other
    if _tasks is None:  # assigned last: a concurrent first request never sees half the clients
        _db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
        channel = grpc.insecure_channel(os.environ["CLOUD_TASKS_EMULATOR_HOST"])
        _tasks = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return _db, _tasks


def webhook(request):
    secret = os.environ["LOOPMESSAGE_WEBHOOK_SECRET"].encode()
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), secret):
        return {"detail": "Unauthorized"}, 401
    delivery = request.get_json()
    db, tasks = _clients()
    now = datetime.now(UTC)
    contact = delivery["recipient"]
    conversation = db.collection("conversations").document(contact)
    batch = db.batch()
    batch.create(
        db.collection("webhook_events").document(delivery["webhook_id"]),
        {"webhookId": delivery["webhook_id"], "contact": contact, "receivedAt": now},
    )
    batch.set(
        conversation.collection("messages").document("in-" + delivery["message_id"]),
        {"direction": "inbound", "text": delivery["text"], "answered": False, "createdAt": now},
    )
    batch.set(
        conversation,
        {"generation": firestore.Increment(1), "lastInboundAt": now, "updatedAt": now},
        merge=True,
    )
    batch.commit()
    schedule = timestamp_pb2.Timestamp()
    schedule.FromDatetime(now + timedelta(seconds=60))
    parent = tasks.queue_path(
        os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["TASKS_LOCATION"], "agent-replies"
    )
    body = json.dumps({"contact": contact}).encode()
    task = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=os.environ["TASKS_TARGET_BASE_URL"] + "/agent_worker",
            headers={"Content-Type": "application/json"},
            body=body,
        ),
        schedule_time=schedule,
    )
    tasks.create_task(parent=parent, task=task)
    return {"status": "accepted"}
