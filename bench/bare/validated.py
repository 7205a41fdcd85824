"""The least a validating API adds to a bare function: pydantic, one input and one output check.

`BARE_MODULE` names the bare module (`auth_fn`, `firestore_fn`, ...) whose
function of the same name is the target; this module imports pydantic,
validates the request path and, for a JSON answer, the answer, each through
a TypeAdapter built on first use (as our routes build theirs). It is the
floor for our cold starts: what any function that validates with pydantic,
as every endpoint here must, pays on top of its Google clients.
"""

import importlib
import os
import sys
from typing import Any

from pydantic import TypeAdapter

sys.path.insert(0, os.path.dirname(__file__))
_bare = importlib.import_module(os.environ["BARE_MODULE"])
_adapters: dict[str, TypeAdapter] = {}


def _adapter(name, kind):
    if name not in _adapters:
        _adapters[name] = TypeAdapter(kind)
    return _adapters[name]


def __getattr__(name):
    function = getattr(_bare, name)

    def validated(request):
        _adapter("path", str).validate_python(request.path)
        result = function(request)
        if isinstance(result, dict):
            adapter = _adapter("answer", dict[str, Any])
            return adapter.dump_python(adapter.validate_python(result), mode="json")
        return result

    validated.__name__ = name
    return validated
