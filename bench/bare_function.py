"""The baseline for cold-start benchmarks: a functions-framework function importing nothing."""


def bare(request):
    return {"ok": True}
