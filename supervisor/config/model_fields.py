"""The pydantic building blocks the stack-file models share: the strict base model and
the field types that read TOML values (environment keys and values, byte sizes).

Invariants: every model built on `StrictModel` forbids unknown keys, is frozen and is
strict (pydantic's strict mode): a boolean is only TOML's true or false, a number is
never a boolean or a string (`port = true`, `stop_timeout = "5"` are refused), and a
float field takes a TOML integer (`stop_timeout = 5`). The only conversions are a TOML
number given where a string is expected (an environment value or model key, a tcp
address: `PORT = 8080` is "8080"; true and false are refused there too), and a size
written with a unit (K, M, G are powers of 1024). Imported only where
`supervisor.config.model` is, in the validation (never by the runtime).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from supervisor.config.spec import ENV_KEY_RULE, is_env_key


def scalar_to_str(value: object) -> object:
    """A TOML number as the string an environment value is; booleans and tables are left
    for the str field to refuse."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[str, BeforeValidator(scalar_to_str)]


def _env_key(value: str) -> str:
    if not is_env_key(value):
        raise ValueError(f"{value!r} is not {ENV_KEY_RULE}")
    return value


EnvKey = Annotated[str, AfterValidator(_env_key)]


class StrictModel(BaseModel):
    # strict: no lax coercion (true is not 1, "25" is not 25, "yes" is not true); the
    # two conversions above are the fields' own, before pydantic's strict check.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _byte_size(value: object) -> object:
    """`10485760`, "10MiB", "10M", "512KB": a size in bytes (K, M, G are powers of 1024)."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f'expected a size like 10485760 or "10MiB", got {value!r}')
        unit = (match.group(2) or "").upper()[:1]
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    return value


ByteSize = Annotated[int, BeforeValidator(_byte_size), Field(ge=1)]
