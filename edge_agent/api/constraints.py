"""What a chat request asks of the sampler beyond temperature and top-p.

``response_format`` becomes a GBNF grammar (``json_object``: any JSON object; ``json_schema``:
its schema, converted by llama-cpp-python's ``json_schema_to_gbnf``), ``logit_bias`` a list of
(token id, bias). Tools are ``api.tools``.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatCompletionRequest

# ``json_object``: OpenAI's JSON mode promises an object, not any JSON value.
_JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


def response_grammar(body: ChatCompletionRequest) -> str | None:
    """The GBNF grammar ``response_format`` asks for, or None for plain text."""
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        schema: Any = _JSON_OBJECT_SCHEMA
    else:
        # OpenAI's json_schema object: {"name", "schema", "strict", "description"}; a missing
        # schema allows any JSON object.
        schema = (fmt.json_schema or {}).get("schema", _JSON_OBJECT_SCHEMA)
    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as error:  # the converter raises assertions and key errors on bad input
        raise InvalidRequestError(
            f"response_format.json_schema.schema cannot be turned into a grammar: {error}",
            param="response_format",
        ) from error


def logit_bias(body: ChatCompletionRequest) -> tuple[tuple[int, float], ...]:
    """``logit_bias`` as (token id, bias) pairs. OpenAI's keys are token ids written as
    strings; anything else is a 400 (the engine refuses ids its vocabulary does not have)."""
    pairs = []
    for key, bias in (body.logit_bias or {}).items():
        if not key.strip().isdigit():
            raise InvalidRequestError(
                f"logit_bias key {key!r} is not a token id.", param="logit_bias"
            )
        pairs.append((int(key), float(bias)))
    return tuple(sorted(pairs))
