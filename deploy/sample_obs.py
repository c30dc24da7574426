"""The shipped sample OB set (deploy/data/sample_obs.json): read, validated, and loaded into an empty OB store."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from planner.store import AutoObCreate, FollowUpObCreate, ObCreate, ObPublic, ObStore

SAMPLE_OBS_PATH = Path(__file__).with_name("data") / "sample_obs.json"


class AutoEntry(BaseModel):
    """A transient for classification, as the Marshall's createAutoOB sends it."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["auto"]
    data: AutoObCreate


class FollowUpEntry(BaseModel):
    """A source in follow-up, as the Marshall's createFollowUpOB sends it."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["follow_up"]
    data: FollowUpObCreate


class ObEntry(BaseModel):
    """An ESO-programme OB or a manual ToO."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["ob"]
    data: ObCreate


SampleEntry = Annotated[AutoEntry | FollowUpEntry | ObEntry, Field(discriminator="kind")]


class SampleObSet(BaseModel):
    """The file: how it was generated, and the OBs."""

    model_config = ConfigDict(extra="forbid")
    generator: str
    obs: list[SampleEntry] = Field(min_length=1)


_ADAPTER = TypeAdapter(SampleObSet)


class SampleObError(ValueError):
    """The sample OB file is unreadable; the message names the file, the entry and the field."""


def read_sample_obs(path: Path = SAMPLE_OBS_PATH) -> SampleObSet:
    """The validated OB set of `path`; a bad file raises SampleObError naming the entry and field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SampleObError(f"{path}: cannot read: {exc}") from exc
    except ValueError as exc:
        raise SampleObError(f"{path}: not JSON: {exc}") from exc
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SampleObError(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from None


def load_sample_obs(store: ObStore, obs: SampleObSet, *, now: datetime) -> list[ObPublic]:
    """Create every OB of the set through the store's own operations, unless the store holds OBs already.

    Loading only into an empty store keeps a restart of `skyops up` from doubling the queue.
    """
    if store.list():
        return []
    created: list[ObPublic] = []
    for entry in obs.obs:
        if isinstance(entry, AutoEntry):
            created.append(store.create_auto_ob(data=entry.data, now=now, actor="sample-obs"))
        elif isinstance(entry, FollowUpEntry):
            created.append(store.create_follow_up_ob(data=entry.data, now=now, actor="sample-obs"))
        else:
            created.append(store.create_ob(data=entry.data, now=now, actor="sample-obs"))
    return created
