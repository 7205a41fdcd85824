"""Cold-start baseline for `storage`: a bare function importing google-cloud-storage."""

from google.cloud import storage  # noqa: F401 - the import is what is measured


def bare_storage(request):
    return {"ok": True}
