"""Loading YAML configuration into validated models, with errors that name the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from skyops.errors import SkyopsError

M = TypeVar("M", bound=BaseModel)
DEFAULTS_DIR = Path(__file__).with_name("defaults")


class ConfigError(SkyopsError, ValueError):
    """A configuration file is unreadable or invalid; the message says where and why."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{self.path}: " + "; ".join(problems))


def read_yaml(path: Path | str) -> Any:
    """Parse one YAML file; syntax errors name the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(p, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(p, [f"{where}{getattr(exc, 'problem', None) or exc}"]) from None


def validate(path: Path | str, data: Any, model: type[M]) -> M:
    """Validate parsed data against `model`; every problem is reported with its field path."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError(path, problems) from None


def load_model(path: Path | str, model: type[M]) -> M:
    """Read a YAML file and validate it as `model`."""
    return validate(path, read_yaml(path), model)


def default_path(name: str) -> Path:
    """A configuration file shipped with the package (the La Silla / NTT defaults)."""
    return DEFAULTS_DIR / name
