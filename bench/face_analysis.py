"""Face analysis latency per image, next to the DeepFace calls it wraps.

Uses DeepFace's real ONNX loading with the stand-in models the tests write
(real input and output shapes), on scikit-image's astronaut photo. For
detection only and for gender + race, `faces.analyze_image` (decode,
settings, weights check, the DeepFace call, the result model) is timed
against decoding and the bare DeepFace call (`extract_faces` or
`analyze`), alternating, after one warm-up call each.

    PYTHONPATH=. .venv/bin/python bench/face_analysis.py [--runs 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from skimage import data

from bench.common import Row, table
from tests.fakes.face_models import write_models


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG")
    return buffer.getvalue()


def bare_call(attributes: list[str]) -> Callable[[bytes], object]:
    """Decode and call DeepFace directly, as `faces.analyze_image` does underneath."""
    import cv2
    import numpy as np
    from deepface import DeepFace

    from shared.social.faces import DETECTOR

    def call(image: bytes) -> object:
        decoded = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_COLOR)
        if attributes:
            return DeepFace.analyze(
                img_path=decoded,
                actions=attributes,
                detector_backend=DETECTOR,
                enforce_detection=True,
                silent=True,
            )
        return DeepFace.extract_faces(
            img_path=decoded, detector_backend=DETECTOR, enforce_detection=True
        )

    return call


def timed(call: Callable[[bytes], object], image: bytes) -> float:
    started = time.perf_counter()
    call(image)
    return time.perf_counter() - started


def measure(runs: int = 20) -> list[Row]:
    """Warm medians of our analysis and of the bare DeepFace call (milliseconds)."""
    from shared.platform.config import get_settings
    from shared.social import faces

    home = Path(tempfile.mkdtemp(prefix="deepface-bench-"))
    write_models(home)
    os.environ["DEEPFACE_HOME"] = str(home)
    os.environ["SPECIAL_CATEGORY_INFERENCE"] = "true"
    image = photo()
    rows = []
    for label, attributes in (("detection only", []), ("gender + race", ["gender", "race"])):
        os.environ["FACE_ATTRIBUTES"] = json.dumps(attributes)
        get_settings.cache_clear()
        first = faces.analyze_image(image)
        assert first.face_detected, first.error
        bare = bare_call(attributes)
        bare(image)
        ours_times, bare_times = [], []
        for _ in range(runs):
            ours_times.append(timed(faces.analyze_image, image))
            bare_times.append(timed(bare, image))
        name = "extract_faces" if not attributes else "analyze"
        rows.append(
            Row(
                f"face analysis, {label} (median of {runs})",
                statistics.median(ours_times) * 1000,
                statistics.median(bare_times) * 1000,
                f"decode + DeepFace.{name}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(table(measure(args.runs)))


if __name__ == "__main__":
    main()
