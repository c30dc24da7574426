"""The P2 emulator's accounts, observing runs and instrument templates: what a fresh emulator starts with."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

INSTRUMENT = "SOXS"
IP_VERSION = "112.00"
# Overheads the emulator charges on top of the exposure time, in seconds (acquisition, per exposure).
ACQUISITION_OVERHEAD_S = 420
PER_EXPOSURE_OVERHEAD_S = 60


class SeedUser(BaseModel):
    """A P2 account: the SOXS consortium account, a PI, or the telescope Operator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: int = Field(gt=0)
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr
    first_name: str
    last_name: str
    email: str


class SeedRun(BaseModel):
    """An observing run owned by one user and delegated (Phase 2 delegation) to others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: int = Field(gt=0)
    container_id: int = Field(gt=0, description="id of the run's top-level folder")
    prog_id: str
    title: str
    period: int = 112
    instrument: str = INSTRUMENT
    telescope: str = "ESO-NTT"
    mode: Literal["VM", "SM"] = "VM"
    owner: int = Field(description="user_id of the PI or account that owns the run")
    delegated_to: tuple[int, ...] = Field(default=(), description="user_ids that may see and use the run's OBs")


class TemplateParam(BaseModel):
    """One parameter of a template signature, with its allowed values or range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["number", "integer", "string"]
    default: float | int | str
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] | None = None


class TemplateSignature(BaseModel):
    """A template an OB may carry; science templates define the OB's exposure time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["acquisition", "science", "calib"]
    parameters: tuple[TemplateParam, ...]


class Seed(BaseModel):
    """Everything a fresh emulator holds before anyone calls it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: tuple[SeedUser, ...]
    runs: tuple[SeedRun, ...]
    templates: tuple[TemplateSignature, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Seed:
        ids = {u.user_id for u in self.users}
        if len(ids) != len(self.users) or len({u.username for u in self.users}) != len(self.users):
            raise ValueError("user ids and usernames must be unique")
        for run in self.runs:
            unknown = ({run.owner} | set(run.delegated_to)) - ids
            if unknown:
                raise ValueError(f"run {run.run_id} names unknown users {sorted(unknown)}")
        if len({r.run_id for r in self.runs}) != len(self.runs):
            raise ValueError("run ids must be unique")
        if len({r.container_id for r in self.runs}) != len(self.runs):
            raise ValueError("run container ids must be unique")
        return self

    def user(self, username: str) -> SeedUser:
        for u in self.users:
            if u.username == username:
                return u
        raise KeyError(username)

    def run_of(self, username: str) -> SeedRun:
        owner = self.user(username).user_id
        for run in self.runs:
            if run.owner == owner:
                return run
        raise KeyError(username)


def _exp_params() -> tuple[TemplateParam, ...]:
    return (
        TemplateParam(name="SEQ.EXPTIME", type="number", default=600.0, minimum=1.0, maximum=7200.0),
        TemplateParam(name="SEQ.NEXP", type="integer", default=1, minimum=1, maximum=50),
    )


SOXS_TEMPLATES: tuple[TemplateSignature, ...] = (
    TemplateSignature(
        name="SOXS_acq_img",
        type="acquisition",
        parameters=(
            TemplateParam(name="TEL.ROT.OFFANGLE", type="number", default=0.0, minimum=-360.0, maximum=360.0),
            TemplateParam(name="SEQ.ACQ.MODE", type="string", default="IMG", allowed=("IMG", "SLIT")),
        ),
    ),
    TemplateSignature(
        name="SOXS_spec_obs_stare",
        type="science",
        parameters=(
            *_exp_params(),
            TemplateParam(name="INS.SLIT.WIDTH", type="string", default="1.0", allowed=("0.5", "1.0", "1.5", "5.0")),
        ),
    ),
    TemplateSignature(
        name="SOXS_img_obs",
        type="science",
        parameters=(
            *_exp_params(),
            TemplateParam(name="INS.FILTER", type="string", default="r", allowed=("u", "g", "r", "i", "z", "V")),
        ),
    ),
)


def default_seed(password: str = "p2-emulator") -> Seed:
    """SOXS (owner of the Marshall's OBs), two PIs (one delegating to the Operator) and the Operator."""
    secret = SecretStr(password)
    users = (
        SeedUser(user_id=52001, username="soxs", password=secret, first_name="SOXS", last_name="Consortium",
                 email="soxs@example.org"),
        SeedUser(user_id=52002, username="pi", password=secret, first_name="Paula", last_name="Investigator",
                 email="pi@example.org"),
        SeedUser(user_id=52003, username="pi2", password=secret, first_name="Pedro", last_name="Nodelegation",
                 email="pi2@example.org"),
        SeedUser(user_id=52010, username="operator", password=secret, first_name="NTT", last_name="Operator",
                 email="ntt-operator@example.org"),
    )
    runs = (
        SeedRun(run_id=60900001, container_id=3000001, prog_id="112.29SX.001", title="SOXS GTO transients",
                owner=52001, delegated_to=(52010,)),
        SeedRun(run_id=60900002, container_id=3000002, prog_id="112.2ABC.001", title="PI visitor programme",
                owner=52002, delegated_to=(52010,)),
        SeedRun(run_id=60900003, container_id=3000003, prog_id="112.2XYZ.001", title="Undelegated programme",
                owner=52003),
        SeedRun(run_id=60900004, container_id=3000004, prog_id="112.2SRV.001", title="Service mode programme",
                owner=52001, mode="SM", delegated_to=(52010,)),
    )
    return Seed(users=users, runs=runs, templates=SOXS_TEMPLATES)
