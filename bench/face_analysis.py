"""Face analysis latency per image: detection only, and with the attribute models.

Uses DeepFace's real ONNX loading with the stand-in models the tests write
(real input and output shapes), on scikit-image's astronaut photo.

    .venv/bin/python bench/face_analysis.py [--runs 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

from tests.fakes.face_models import write_models


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG")
    return buffer.getvalue()


def measure(attributes: list[str], image: bytes, runs: int) -> tuple[float, float]:
    from shared.platform.config import get_settings
    from shared.social import faces

    os.environ["FACE_ATTRIBUTES"] = json.dumps(attributes)
    os.environ["SPECIAL_CATEGORY_INFERENCE"] = "true"
    get_settings.cache_clear()
    started = time.perf_counter()
    first = faces.analyze_image(image)
    cold = time.perf_counter() - started
    assert first.face_detected, first.error
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        faces.analyze_image(image)
        timings.append(time.perf_counter() - started)
    return cold, statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="deepface-bench-"))
    write_models(home)
    os.environ["DEEPFACE_HOME"] = str(home)
    image = photo()
    for label, attributes in (("detection only", []), ("gender + race", ["gender", "race"])):
        cold, warm = measure(attributes, image, args.runs)
        print(f"{label}: first call {cold * 1000:.0f} ms, then median {warm * 1000:.0f} ms")


if __name__ == "__main__":
    main()
