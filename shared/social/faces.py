"""Face detection and attributes of profile photos, with DeepFace on its ONNX backend.

DeepFace, OpenCV and onnxruntime are imported only here, inside the
functions that need them. Detection uses OpenCV's Haar cascades (shipped by
opencv-contrib-python-headless); attribute models load from
`$DEEPFACE_HOME/.deepface/weights` and are never downloaded at request time.
Detection needs no model file, so a missing attribute model never hides a
face: the result keeps `face_detected` and `region`, computes the attributes
whose models are present, names the others in `missing_attributes` and says
so in `error`. Confidences are fractions (0-1).

Gender and race are special-category data: they are computed only when
`SPECIAL_CATEGORY_INFERENCE` is on. Off, their models are neither loaded nor
run, and the result is detection only (`face_detected`, `region`).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.platform.config import get_settings
from shared.social.profile_types import Label, PictureData

logger = logging.getLogger(__name__)

WEIGHT_FILES = {"gender": "gender_model_weights.onnx", "race": "race_model_single_batch.onnx"}
SPECIAL_CATEGORY = frozenset({"gender", "race"})
DETECTOR = "opencv"


def _weights_dir() -> Path:
    home = get_settings().deepface_home or os.environ.get("DEEPFACE_HOME") or str(Path.home())
    return Path(home) / ".deepface" / "weights"


def _prepare_deepface() -> None:
    os.environ["DEEPFACE_BACKEND_ENGINE"] = "onnx"
    if get_settings().deepface_home:
        os.environ["DEEPFACE_HOME"] = str(get_settings().deepface_home)


def enabled_attributes() -> list[str]:
    """The attributes this deployment computes (special-category ones only when enabled)."""
    settings = get_settings()
    return [
        attribute
        for attribute in settings.face_attributes
        if attribute in WEIGHT_FILES
        and (attribute not in SPECIAL_CATEGORY or settings.special_category_inference)
    ]


def analyze_image(data: bytes) -> PictureData:
    """Detect the main face of an image and compute the configured attributes.

    Args:
        data: Encoded image bytes.

    Returns:
        The seed's `picture_data` plus `region` and `missing_attributes`;
        `error` says why nothing (or not everything) was found.
    """
    import cv2
    import numpy as np

    now = datetime.now(UTC)
    wanted = enabled_attributes()
    missing = [a for a in wanted if not (_weights_dir() / WEIGHT_FILES[a]).is_file()]
    actions = [a for a in wanted if a not in missing]
    missing_error = None
    if missing:
        files = [WEIGHT_FILES[a] for a in missing]
        logger.error("face model weights missing", extra={"files": files})
        missing_error = f"Model weights missing: {', '.join(files)}"
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return PictureData(analyzed_at=now, error="The image could not be decoded")
    _prepare_deepface()
    from deepface import DeepFace

    try:
        if actions:
            faces: list[dict[str, Any]] = DeepFace.analyze(
                img_path=image,
                actions=actions,
                detector_backend=DETECTOR,
                enforce_detection=True,
                silent=True,
            )
        else:
            faces = [
                {"region": face["facial_area"]}
                for face in DeepFace.extract_faces(
                    img_path=image, detector_backend=DETECTOR, enforce_detection=True
                )
            ]
    except ValueError:
        return PictureData(
            analyzed_at=now, error="No face detected", missing_attributes=missing or None
        )
    face = max(faces, key=lambda f: int(f["region"]["w"]) * int(f["region"]["h"]))
    return PictureData(
        face_detected=True,
        gender=_label(face, "gender") if "gender" in actions else None,
        race=_label(face, "race") if "race" in actions else None,
        analyzed_at=now,
        error=missing_error,
        region={key: int(face["region"][key]) for key in ("x", "y", "w", "h")},
        missing_attributes=missing or None,
    )


def _label(face: dict[str, Any], attribute: str) -> Label:
    dominant = str(face[f"dominant_{attribute}"])
    return Label(label=dominant, confidence=round(float(face[attribute][dominant]) / 100, 4))
