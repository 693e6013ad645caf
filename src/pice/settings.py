"""Settings that read a YAML file below the environment: the base of every PICE settings class."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class YamlSettings(BaseSettings):
    """Precedence: explicit values (CLI flags) > environment > the YAML file > defaults."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


S = TypeVar("S", bound=YamlSettings)


def load_yaml_settings(cls: type[S], config: Path | None = None, **overrides: Any) -> S:
    """``cls`` from an optional YAML file, the environment and ``overrides`` (``None`` = unset)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        return cls(**given)
    if not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")

    # pydantic-settings reads the YAML path from the model config; a subclass made here keeps
    # the path out of module state.
    class _FromFile(cls):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(yaml_file=config)

    result: S = _FromFile(**given)
    return result
