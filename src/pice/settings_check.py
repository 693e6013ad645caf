"""Settings names that match nothing: a mistyped variable or YAML key, which pydantic ignores.

The settings classes ignore names they do not know (``extra="ignore"``), so that one
environment can hold the variables of a whole stack (gateway, edges, scripts). The price is
that a typo turns nothing on: ``PICE_HEDGING__ENABLED=true`` leaves hedging off without a word.
These functions find such names so start-up can warn about them, with the nearest real name.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

DELIMITER = "__"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings group ``annotation`` holds (``X`` or ``X | None``), if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def setting_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every name a value can be given under: each field, and inside each settings group."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        yield path
        group = _model_in(field.annotation)
        if group is not None:
            yield from setting_paths(group, path)


def unknown_env_variables(
    model: type[BaseModel], environ: Mapping[str, str], prefix: str
) -> list[str]:
    """Warnings for variables ``PICE_A__B`` that look like a nested setting but name none.

    Only names with the nested delimiter are judged: single names under the prefix are also
    used by scripts and other processes (``PICE_MODEL_CACHE``, ``PICE_VLLM_VENV``, the edge's
    ``PICE_EDGE_*`` in the gateway's environment), and cannot be told from typos. No setting
    is a mapping, so a delimited name is either a path to a setting or a mistake.
    """
    known = {DELIMITER.join(path) for path in setting_paths(model)}
    warnings = []
    for variable in sorted(environ):
        if not variable.upper().startswith(prefix.upper()):
            continue
        name = variable[len(prefix) :].lower()
        if DELIMITER not in name or name in known:
            continue
        close = _nearest(name, known)
        hint = f"; did you mean {prefix}{close.upper()}?" if close else ""
        warnings.append(f"{variable} names no setting and is ignored{hint}")
    return warnings


def _nearest(name: str, known: set[str]) -> str | None:
    """The setting ``name`` most likely meant: one it is the tail of (a group left out, the
    commonest slip), else the closest spelling."""
    tails = sorted(path for path in known if path.endswith(DELIMITER + name))
    if tails:
        return tails[0]
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_keys(model: type[BaseModel], data: Mapping[str, Any], where: str = "") -> list[str]:
    """Warnings for keys of a YAML settings file that name no setting (recursively)."""
    warnings = []
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        dotted = f"{where}.{key}" if where else str(key)
        if field is None:
            close = difflib.get_close_matches(str(key), list(model.model_fields), n=1, cutoff=0.6)
            hint = f"; did you mean {(where + '.') if where else ''}{close[0]}?" if close else ""
            warnings.append(f"{dotted} names no setting and is ignored{hint}")
            continue
        group = _model_in(field.annotation)
        if group is not None and isinstance(value, Mapping):
            warnings.extend(unknown_keys(group, value, dotted))
    return warnings


def settings_warnings(
    model: type[BaseSettings], config: Path | None, environ: Mapping[str, str]
) -> list[str]:
    """What start-up should warn about: unknown delimited variables, unknown YAML keys."""
    prefix = str(model.model_config.get("env_prefix") or "")
    warnings = unknown_env_variables(model, environ, prefix)
    if config is not None and config.is_file():
        data = yaml.safe_load(config.read_text()) or {}
        if isinstance(data, Mapping):
            warnings += [f"{config}: {w}" for w in unknown_keys(model, data)]
    return warnings
