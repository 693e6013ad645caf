"""The request's ``pice`` object: PICE's own knobs carried in an OpenAI chat request.

An opt-in extension field, ``{"pice": {"candidates": 3}}`` in the request body (the OpenAI SDK
sends it with ``extra_body={"pice": {...}}``). Every field is optional and overrides the
gateway's setting for this request only; unknown keys are ignored, like unknown request fields,
and a wrong value is a 400 before the first byte. The field is never forwarded to the cloud.

    candidates   int 1..8   ensemble candidates per point (``progressive.ensemble_candidates``);
                            1 turns the ensemble off, the load rule may still lower it
    events       bool       a streamed answer also carries point-level events, as SSE
                            comments every other client skips (``progressive.watch``)
    point_words  int 8..200 the length each point's body is asked for, in words
                            (``progressive.point_words``)
    frame        bool       the sketch also writes an opening line and a closing sentence
                            around the points (``progressive.frame``)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from pice.edge_protocol import MAX_CANDIDATES, MAX_POINT_WORDS
from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatCompletionRequest

FIELD = "pice"


class PiceOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    candidates: int | None = Field(default=None, ge=1, le=MAX_CANDIDATES)
    # Strict, as the request's own booleans are: ``"events": "yes"`` is a 400, not ``True``.
    events: StrictBool = False
    point_words: int | None = Field(default=None, ge=8, le=MAX_POINT_WORDS)
    frame: StrictBool | None = None


def pice_options(request: ChatCompletionRequest) -> PiceOptions:
    """The request's ``pice`` object, validated (an absent one gives every default)."""
    raw = (request.model_extra or {}).get(FIELD)
    if raw is None:
        return PiceOptions()
    try:
        return PiceOptions.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in (FIELD, *error["loc"]))
        raise InvalidRequestError(f"'{where}': {error['msg']}", param=where) from exc
