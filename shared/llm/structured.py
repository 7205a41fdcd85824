"""Reading a model's structured (JSON object) answer leniently.

Cloud providers constrain their output to the schema; small local models
(SmolLM2 behind llama.cpp) do not always manage: they wrap the object in a
Markdown code fence, put raw newlines inside strings, add prose around it,
or are cut off by `max_tokens` mid-object. `json_object` repairs all of
these with json-repair and returns the object, or None when the answer
holds no object at all (plain prose, an empty answer, a list).
"""

from __future__ import annotations

from typing import Any


def json_object(content: str) -> dict[str, Any] | None:
    """Parse a model's answer as a JSON object, repairing what small models get wrong.

    Args:
        content: The model's answer text.

    Returns:
        The object (keys are strings), or None when no object can be recovered.
    """
    import json_repair

    parsed = json_repair.loads(content) if content.strip() else None
    return parsed if isinstance(parsed, dict) else None
