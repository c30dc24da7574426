"""The Marshall-facing operations with the SOXS request and response shapes, for the HMI's REST routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.store import (
    LIVE_STATES,
    AutoObCreate,
    FollowUpObCreate,
    NotObservableError,
    ObConstraints,
    ObPublic,
    ObStore,
)
from skyops.errors import ConflictError, NotFoundError
from skyops.timeutil import Clock

# ESO P2 status letters the Marshall reads back (obMarshallShort's ESO_OB_Status).
ESO_STATUS = {
    "queued": "P",
    "scheduled": "+",
    "observed": "C",
    "failed": "F",
    "expired": "X",
    "deleted": "D",
}


# Ids are stored as 64-bit integers: anything outside is refused as bad input, never passed to the database.
DbId = Annotated[int, Field(ge=0, le=2**63 - 1)]
MAX_EXPOSURE_S = 12 * 3600


class MarshallReply(BaseModel):
    """The SOXS scheduler's envelope: status 1 on success, 0 on failure, the HTTP code inside `data`."""

    model_config = ConfigDict(extra="forbid")

    status: int
    data: dict[str, Any]

    @property
    def http_status(self) -> int:
        return int(self.data["status_code"])


class CreateAutoObBody(BaseModel):
    """createAutoOB as the Marshall sends it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    magnitude_list: list[tuple[str, float]] = Field(min_length=1)
    right_ascension: float
    declination: float
    target_name: str
    transient_bucket_id: DbId = Field(alias="transientBucketID")


class UpdateMagnitudeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    transient_bucket_id: DbId = Field(alias="transientBucketID")
    magnitude_list: list[tuple[str, float]] = Field(min_length=1)


class FollowUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    transient_bucket_id: DbId = Field(alias="transientBucketID")
    ob_name: str
    target_name: str
    right_ascension: float
    declination: float
    exposure_time: float = Field(gt=0, le=MAX_EXPOSURE_S, description="seconds; at most one night")
    priority: int = 2
    magnitude_list: list[tuple[str, float]] = Field(default_factory=list)
    constraints: ObConstraints = ObConstraints()
    setup: dict[str, str | float | int | bool] = Field(default_factory=dict)


class DeleteObBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ob_id: DbId = Field(alias="OB_ID")


def _brightest(magnitudes: list[tuple[str, float]]) -> tuple[str, float]:
    return min(magnitudes, key=lambda pair: pair[1])


def ok(status_code: int, payload: list[dict[str, Any]]) -> MarshallReply:
    return MarshallReply(status=1, data={"status_code": status_code, "payload": payload})


def fail(status_code: int, message: str) -> MarshallReply:
    return MarshallReply(status=0, data={"status_code": status_code, "message": message})


class MarshallApi:
    """Each operation takes the Marshall's JSON body and returns the reply; nothing raises on bad input."""

    def __init__(self, store: ObStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def create_auto_ob(self, body: dict[str, Any]) -> MarshallReply:
        def run() -> MarshallReply:
            data = CreateAutoObBody.model_validate(body)
            band, magnitude = _brightest(data.magnitude_list)
            ob = self._store.create_auto_ob(
                data=AutoObCreate(
                    mid=data.transient_bucket_id,
                    target_name=data.target_name,
                    ra_deg=data.right_ascension,
                    dec_deg=data.declination,
                    magnitude=magnitude,
                    mag_filter=band,
                ),
                now=self._clock.now(),
            )
            return ok(201, [{"OB_ID": ob.id}])

        return _guard(run, _field_names(AutoObCreate, CreateAutoObBody))

    def update_auto_ob_magnitude(self, body: dict[str, Any]) -> MarshallReply:
        def run() -> MarshallReply:
            data = UpdateMagnitudeBody.model_validate(body)
            _, magnitude = _brightest(data.magnitude_list)
            ob = self._store.update_auto_ob_magnitude(
                mid=data.transient_bucket_id, magnitude=magnitude, now=self._clock.now()
            )
            return ok(200, [{"OB_ID": ob.id, "magnitude": ob.magnitude, "exposure_time": ob.exposure_s}])

        return _guard(run, {})

    def create_follow_up_ob(self, body: dict[str, Any]) -> MarshallReply:
        def run() -> MarshallReply:
            data = FollowUpBody.model_validate(body)
            band, magnitude = _brightest(data.magnitude_list) if data.magnitude_list else (None, None)
            ob = self._store.create_follow_up_ob(
                data=FollowUpObCreate(
                    mid=data.transient_bucket_id,
                    name=data.ob_name,
                    target_name=data.target_name,
                    ra_deg=data.right_ascension,
                    dec_deg=data.declination,
                    magnitude=magnitude,
                    mag_filter=band,
                    exposure_s=data.exposure_time,
                    priority=data.priority,
                    constraints=data.constraints,
                    setup=data.setup,
                ),
                now=self._clock.now(),
            )
            return ok(201, [{"OB_ID": ob.id}])

        return _guard(run, _field_names(FollowUpObCreate, FollowUpBody))

    def delete_ob(self, body: dict[str, Any]) -> MarshallReply:
        def run() -> MarshallReply:
            data = DeleteObBody.model_validate(body)
            ob = self._store.delete_ob(ob_id=data.ob_id, now=self._clock.now())
            return ok(200, [{"OB_ID": ob.id}])

        return _guard(run, {})

    def auto_clean_obs(self) -> MarshallReply:
        expired = self._store.auto_clean(now=self._clock.now())
        return ok(200, [{"OB_ID": ob.id, "transientBucketID": ob.mid} for ob in expired])

    def ob_marshall_short(self) -> MarshallReply:
        """Every live or finished Marshall OB with its ESO status letter."""
        obs = [ob for ob in self._store.list() if ob.mid is not None]
        return ok(200, [_short(ob) for ob in obs])


def _short(ob: ObPublic) -> dict[str, Any]:
    return {
        "OB_ID": ob.id,
        "transientBucketID": ob.mid,
        "target_name": ob.target_name,
        "ESO_OB_Status": ESO_STATUS[ob.state.value],
        "live": ob.state in LIVE_STATES,
    }


def _field_names(model: type[BaseModel], body: type[BaseModel]) -> dict[str, str]:
    """Store field → Marshall field, so errors name what the Marshall sent."""
    names = {
        "ra_deg": "right_ascension",
        "dec_deg": "declination",
        "mid": "transientBucketID",
        "exposure_s": "exposure_time",
        "name": "ob_name",
        "magnitude": "magnitude_list",
    }
    return {
        k: v for k, v in names.items() if k in model.model_fields and v in {*body.model_fields, "transientBucketID"}
    }


def _guard(run: Callable[[], MarshallReply], renames: dict[str, str]) -> MarshallReply:
    try:
        return run()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(renames.get(str(p), str(p)) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        ]
        return fail(422, "; ".join(problems))
    except NotObservableError as exc:
        return fail(422, str(exc))
    except NotFoundError as exc:
        return fail(404, str(exc))
    except ConflictError as exc:
        return fail(409, str(exc))
    except ValueError as exc:
        return fail(422, str(exc))
