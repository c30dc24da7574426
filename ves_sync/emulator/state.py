"""The P2 emulator's state and rules: runs, containers, OBs, templates, VES and executions, with ETag versions."""

from __future__ import annotations

import copy
import itertools
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ves_sync.emulator import schemas as s
from ves_sync.emulator.seed import (
    ACQUISITION_OVERHEAD_S,
    IP_VERSION,
    PER_EXPOSURE_OVERHEAD_S,
    Seed,
    SeedRun,
    SeedUser,
    TemplateSignature,
)

Json = Any
M = TypeVar("M", bound=BaseModel)
MAX_FINDING_CHARTS = 5
MAX_FINDING_CHART_BYTES = 1 << 20
SNAPSHOT_FORMAT = 1
MAX_SESSIONS = 1000
# A visitor OB's status after an execution: started, executed, aborted; a failed one is observable again.
EXECUTION_STATUS = {"started": "S", "executed": "X", "aborted": "A", "failed": "+"}


class P2ApiError(Exception):
    """A refused call: the HTTP status and the message P2 puts in `{"error": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse(model: type[M], data: Json, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise P2ApiError(400, s.describe(exc, what)) from None


def _etag(kind: str, key: object, version: int) -> str:
    return f'"{kind}-{key}-{version}"'


def _empty_ob(ob_id: int, name: str, run: SeedRun, container_id: int) -> dict[str, Json]:
    return {
        "obId": ob_id,
        "itemType": "OB",
        "name": name,
        "obStatus": "P",
        "runId": run.run_id,
        "parentContainerId": container_id,
        "instrument": run.instrument,
        "ipVersion": IP_VERSION,
        "userPriority": 1,
        "exposureTime": 0,
        "executionTime": 0,
        "target": {
            "name": "", "ra": "00:00:00.000", "dec": "00:00:00.000", "equinox": "J2000", "epoch": 2000.0,
            "properMotionRa": 0.0, "properMotionDec": 0.0, "differentialRa": 0.0, "differentialDec": 0.0,
        },
        "constraints": {
            "name": "", "airmass": 2.0, "skyTransparency": "Variable, thin cirrus", "fli": 1.0, "seeing": 2.0,
            "moonDistance": 30, "twilight": 0,
        },
        "obsDescription": {"name": "", "userComments": "", "instrumentComments": ""},
    }


class P2State:
    """Everything the emulator knows, guarded by one lock; `on_change` persists it after each accepted change.

    Methods take the calling user's id, check access (owner of the run or delegated to), and raise
    `P2ApiError` with P2's status codes: 400 bad content, 403 no access, 404 unknown, 409 not allowed
    in the current status, 412 stale ETag, 428 missing If-Match.
    """

    def __init__(self, seed: Seed, data: dict[str, Json] | None = None,
                 on_change: Callable[[dict[str, Json]], None] | None = None) -> None:
        self.seed = seed
        self._users = {u.user_id: u for u in seed.users}
        self._runs = {r.run_id: r for r in seed.runs}
        self._templates = {t.name: t for t in seed.templates}
        self._lock = threading.RLock()
        self._on_change = on_change
        self._closers: list[Callable[[], None]] = []
        self.data: dict[str, Json] = data if data is not None else self._fresh()
        if self.data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"P2 emulator snapshot has format {self.data.get('format')!r}, expected {SNAPSHOT_FORMAT}")

    def _fresh(self) -> dict[str, Json]:
        containers: dict[str, dict[str, Json]] = {
            str(r.container_id): {
                "containerId": r.container_id, "itemType": "Folder", "name": r.prog_id, "runId": r.run_id,
                "parentContainerId": None, "userPriority": 1, "version": 1, "items": [], "itemsVersion": 1,
            }
            for r in self.seed.runs
        }
        return {"format": SNAPSHOT_FORMAT, "nextId": 200_000_001, "tokens": {}, "containers": containers,
                "obs": {}, "templates": {}, "ves": {}, "executions": []}

    @contextmanager
    def _change(self) -> Iterator[None]:
        with self._lock:
            yield
            if self._on_change is not None:
                self._on_change(self.data)

    def set_on_change(self, on_change: Callable[[dict[str, Json]], None]) -> None:
        with self._lock:
            self._on_change = on_change

    def to_json(self) -> str:
        """The whole state as compact JSON, taken under the lock (a consistent cut between two changes)."""
        with self._lock:
            return json.dumps(self.data, separators=(",", ":"))

    def add_closer(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        """Run what must happen before the state is dropped (the last snapshot write)."""
        while self._closers:
            self._closers.pop()()

    def snapshot(self) -> dict[str, Json]:
        with self._lock:
            return copy.deepcopy(self.data)

    def _new_id(self) -> int:
        value = int(self.data["nextId"])
        self.data["nextId"] = value + 1
        return value

    # -- users and access ------------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        for user in self._users.values():
            if user.username == username and secrets.compare_digest(user.password.get_secret_value(), password):
                token = secrets.token_urlsafe(24)
                with self._change():
                    tokens = self.data["tokens"]
                    tokens[token] = user.user_id
                    # p2api never logs out; the oldest sessions expire so the state stays bounded.
                    for old in list(tokens)[: max(0, len(tokens) - MAX_SESSIONS)]:
                        del tokens[old]
                return token
        raise P2ApiError(401, "invalid username or password")

    def authenticate(self, authorization: str | None) -> int:
        if not authorization or not authorization.startswith("Bearer "):
            raise P2ApiError(401, "missing bearer token: log in first")
        with self._lock:
            user_id = self.data["tokens"].get(authorization.removeprefix("Bearer ").strip())
        if user_id is None:
            raise P2ApiError(401, "invalid or expired access token")
        return int(user_id)

    def user(self, user_id: int) -> Json:
        u: SeedUser = self._users[user_id]
        return {"userId": u.user_id, "username": u.username, "firstName": u.first_name, "lastName": u.last_name,
                "emailAddress": u.email}

    def _may_use(self, user_id: int, run: SeedRun) -> bool:
        return run.owner == user_id or user_id in run.delegated_to

    def _run_json(self, run: SeedRun, user_id: int) -> Json:
        pi = self._users[run.owner]
        return {
            "runId": run.run_id, "progId": run.prog_id, "title": run.title, "period": run.period,
            "instrument": run.instrument, "telescope": run.telescope, "mode": run.mode,
            "containerId": run.container_id, "ipVersion": IP_VERSION, "isToO": False,
            "owned": run.owner == user_id, "delegated": run.owner != user_id,
            "pi": {"firstName": pi.first_name, "lastName": pi.last_name, "emailAddress": pi.email},
        }

    def runs(self, user_id: int) -> Json:
        return [self._run_json(r, user_id) for r in self._runs.values() if self._may_use(user_id, r)]

    def run(self, user_id: int, run_id: int) -> Json:
        run = self._runs.get(run_id)
        if run is None:
            raise P2ApiError(404, f"observing run {run_id} does not exist")
        if not self._may_use(user_id, run):
            raise P2ApiError(403, f"observing run {run_id} is neither owned by nor delegated to you")
        return self._run_json(run, user_id)

    # -- lookup ------------------------------------------------------------------------------------

    def _container(self, user_id: int, container_id: int) -> dict[str, Json]:
        c = self.data["containers"].get(str(container_id))
        if c is None:
            raise P2ApiError(404, f"container {container_id} does not exist")
        if not self._may_use(user_id, self._runs[c["runId"]]):
            raise P2ApiError(403, f"container {container_id} belongs to a run neither owned by nor delegated to you")
        return dict(c)

    def _ob(self, user_id: int, ob_id: int) -> dict[str, Json]:
        rec = self.data["obs"].get(str(ob_id))
        if rec is None:
            raise P2ApiError(404, f"OB {ob_id} does not exist")
        if not self._may_use(user_id, self._runs[rec["ob"]["runId"]]):
            raise P2ApiError(403, f"OB {ob_id} belongs to a run neither owned by nor delegated to you")
        return dict(rec)

    @staticmethod
    def _check_etag(if_match: str | None, current: str, what: str) -> None:
        if if_match is None:
            raise P2ApiError(428, f"{what}: the If-Match header with the ETag of your last GET is required")
        if if_match != current:
            raise P2ApiError(412, f"{what} was changed since you read it (ETag {if_match} is stale, now {current})")

    # -- containers --------------------------------------------------------------------------------

    def _container_json(self, c: dict[str, Json]) -> Json:
        return {k: c[k] for k in ("containerId", "itemType", "name", "runId", "parentContainerId", "userPriority")}

    def get_container(self, user_id: int, container_id: int) -> tuple[Json, str]:
        with self._lock:
            c = self._container(user_id, container_id)
            return self._container_json(c), _etag("c", container_id, c["version"])

    def save_container(self, user_id: int, container_id: int, body: Json, if_match: str | None) -> tuple[Json, str]:
        new = parse(s.ContainerBody, body, "container")
        if new.containerId != container_id:
            raise P2ApiError(400, f"containerId {new.containerId} does not match the URL ({container_id})")
        with self._change():
            c = self._container(user_id, container_id)
            self._check_etag(if_match, _etag("c", container_id, c["version"]), f"container {container_id}")
            stored = self.data["containers"][str(container_id)]
            stored.update(name=new.name, userPriority=new.userPriority, version=c["version"] + 1)
        return self.get_container(user_id, container_id)

    def delete_container(self, user_id: int, container_id: int, if_match: str | None) -> None:
        with self._change():
            c = self._container(user_id, container_id)
            self._check_etag(if_match, _etag("c", container_id, c["version"]), f"container {container_id}")
            if c["parentContainerId"] is None:
                raise P2ApiError(409, f"container {container_id} is the top folder of its run and cannot be deleted")
            if c["items"]:
                raise P2ApiError(409, f"container {container_id} is not empty")
            parent = self.data["containers"][str(c["parentContainerId"])]
            parent["items"] = [i for i in parent["items"] if i != ["Folder", container_id]]
            parent["itemsVersion"] += 1
            del self.data["containers"][str(container_id)]

    def _item_json(self, kind: str, item_id: int) -> Json:
        if kind == "OB":
            ob = self.data["obs"][str(item_id)]["ob"]
            return {"itemType": "OB", "obId": item_id, "name": ob["name"], "obStatus": ob["obStatus"]}
        c = self.data["containers"][str(item_id)]
        return {"itemType": c["itemType"], "containerId": item_id, "name": c["name"]}

    def get_items(self, user_id: int, container_id: int) -> tuple[Json, str]:
        with self._lock:
            c = self._container(user_id, container_id)
            items = [self._item_json(kind, item_id) for kind, item_id in c["items"]]
            return items, _etag("items", container_id, c["itemsVersion"])

    def create_item(self, user_id: int, container_id: int, body: Json) -> tuple[Json, str]:
        new = parse(s.NewItem, body, "new item")
        with self._change():
            c = self._container(user_id, container_id)
            run = self._runs[c["runId"]]
            if new.itemType not in ("OB", "Folder"):
                raise P2ApiError(400, f"itemType {new.itemType!r} cannot be created here: this emulator "
                                      "(like Visitor Mode) supports only OB and Folder")
            item_id = self._new_id()
            stored = self.data["containers"][str(container_id)]
            if new.itemType == "OB":
                self.data["obs"][str(item_id)] = {
                    "ob": _empty_ob(item_id, new.name, run, container_id), "version": 1,
                    "abs": [], "absVersion": 1, "sid": [], "sidVersion": 1,
                    "templates": [], "templatesVersion": 1, "charts": [],
                }
                stored["items"].append(["OB", item_id])
            else:
                self.data["containers"][str(item_id)] = {
                    "containerId": item_id, "itemType": "Folder", "name": new.name, "runId": run.run_id,
                    "parentContainerId": container_id, "userPriority": 1, "version": 1, "items": [],
                    "itemsVersion": 1,
                }
                stored["items"].append(["Folder", item_id])
            stored["itemsVersion"] += 1
        if new.itemType == "OB":
            return self.get_ob(user_id, item_id)
        return self.get_container(user_id, item_id)

    def reorder_items(self, user_id: int, container_id: int, body: Json, if_match: str | None) -> tuple[Json, str]:
        if not isinstance(body, list):
            raise P2ApiError(400, "reorderItems expects a list of items")
        refs = [parse(s.ItemRef, item, f"item {n}") for n, item in enumerate(body)]
        with self._change():
            c = self._container(user_id, container_id)
            self._check_etag(if_match, _etag("items", container_id, c["itemsVersion"]), f"items of {container_id}")
            wanted = []
            for ref in refs:
                if ref.obId is not None:
                    wanted.append(["OB", ref.obId])
                elif ref.containerId is not None:
                    wanted.append(["Folder", ref.containerId])
                else:
                    raise P2ApiError(400, "every item needs an obId or a containerId")
            if sorted(map(tuple, wanted)) != sorted(map(tuple, c["items"])):
                raise P2ApiError(400, "reorderItems must list exactly the container's current items, only reordered")
            stored = self.data["containers"][str(container_id)]
            stored["items"] = wanted
            stored["itemsVersion"] += 1
        return self.get_items(user_id, container_id)

    def append_item(self, user_id: int, container_id: int, body: Json) -> None:
        ref = parse(s.MoveItem, body, "item to move")
        with self._change():
            dest = self._container(user_id, container_id)
            if ref.itemType == "OB" and ref.obId is not None:
                rec = self._ob(user_id, ref.obId)
                key, source_id = ["OB", ref.obId], rec["ob"]["parentContainerId"]
                run_id = rec["ob"]["runId"]
            elif ref.itemType == "Folder" and ref.containerId is not None:
                src = self._container(user_id, ref.containerId)
                if src["parentContainerId"] is None:
                    raise P2ApiError(409, f"container {ref.containerId} is a run's top folder and cannot move")
                if self._is_below(container_id, ref.containerId):
                    raise P2ApiError(409, f"container {container_id} lies inside {ref.containerId}")
                key, source_id, run_id = ["Folder", ref.containerId], src["parentContainerId"], src["runId"]
            else:
                raise P2ApiError(400, "move an OB with itemType 'OB' and obId, a folder with 'Folder' and containerId")
            if self._runs[run_id].instrument != self._runs[dest["runId"]].instrument:
                raise P2ApiError(409, "items can only move between runs of the same instrument")
            source = self.data["containers"][str(source_id)]
            source["items"] = [i for i in source["items"] if i != key]
            source["itemsVersion"] += 1
            target = self.data["containers"][str(container_id)]
            target["items"].append(key)
            target["itemsVersion"] += 1
            if key[0] == "OB":
                rec_stored = self.data["obs"][str(key[1])]
                rec_stored["ob"]["parentContainerId"] = container_id
                rec_stored["ob"]["runId"] = dest["runId"]
                rec_stored["version"] += 1
            else:
                moved = self.data["containers"][str(key[1])]
                moved["parentContainerId"] = container_id
                moved["version"] += 1

    def _is_below(self, container_id: int, ancestor_id: int) -> bool:
        current: int | None = container_id
        while current is not None:
            if current == ancestor_id:
                return True
            current = self.data["containers"][str(current)]["parentContainerId"]
        return False

    def ob_summary(self, user_id: int, container_id: int) -> tuple[Json, str]:
        with self._lock:
            c = self._container(user_id, container_id)
            out = []
            for kind, item_id in c["items"]:
                if kind != "OB":
                    continue
                ob = self.data["obs"][str(item_id)]["ob"]
                out.append({k: ob[k] for k in ("obId", "name", "obStatus", "userPriority", "exposureTime",
                                               "executionTime")} | {"targetName": ob["target"]["name"]})
            return out, _etag("items", container_id, c["itemsVersion"])

    # -- OBs ---------------------------------------------------------------------------------------

    def get_ob(self, user_id: int, ob_id: int) -> tuple[Json, str]:
        with self._lock:
            rec = self._ob(user_id, ob_id)
            return copy.deepcopy(rec["ob"]), _etag("ob", ob_id, rec["version"])

    def save_ob(self, user_id: int, ob_id: int, body: Json, if_match: str | None) -> tuple[Json, str]:
        new = parse(s.ObBody, body, "OB")
        if new.obId != ob_id:
            raise P2ApiError(400, f"obId {new.obId} does not match the URL ({ob_id})")
        with self._change():
            rec = self._ob(user_id, ob_id)
            self._check_etag(if_match, _etag("ob", ob_id, rec["version"]), f"OB {ob_id}")
            current = rec["ob"]
            changed_ro = [f for f in s.READ_ONLY_OB_FIELDS if getattr(new, f) != current[f]]
            if changed_ro:
                raise P2ApiError(400, f"OB fields {', '.join(changed_ro)} are read-only and cannot be changed")
            stored = self.data["obs"][str(ob_id)]
            stored["ob"] = new.model_dump(mode="json")
            stored["version"] += 1
        return self.get_ob(user_id, ob_id)

    def delete_ob(self, user_id: int, ob_id: int, if_match: str | None) -> None:
        with self._change():
            rec = self._ob(user_id, ob_id)
            self._check_etag(if_match, _etag("ob", ob_id, rec["version"]), f"OB {ob_id}")
            if any(e["obId"] == ob_id for e in self.data["executions"]):
                raise P2ApiError(409, f"OB {ob_id} has been executed and cannot be deleted")
            parent = self.data["containers"][str(rec["ob"]["parentContainerId"])]
            parent["items"] = [i for i in parent["items"] if i != ["OB", ob_id]]
            parent["itemsVersion"] += 1
            for tid in rec["templates"]:
                del self.data["templates"][str(tid)]
            self._drop_from_ves(ob_id)
            del self.data["obs"][str(ob_id)]

    def _drop_from_ves(self, ob_id: int) -> None:
        for ves in self.data["ves"].values():
            if ob_id in ves["obIds"]:
                ves["obIds"] = [i for i in ves["obIds"] if i != ob_id]
                ves["version"] += 1

    def _verification(self, rec: dict[str, Json]) -> list[str]:
        ob = rec["ob"]
        problems = []
        if not ob["target"]["name"]:
            problems.append("the target has no name")
        kinds = [self.data["templates"][str(t)]["type"] for t in rec["templates"]]
        if kinds.count("acquisition") != 1:
            problems.append("the OB needs exactly one acquisition template")
        if "science" not in kinds:
            problems.append("the OB needs at least one science template")
        for tid in rec["templates"]:
            tpl = self.data["templates"][str(tid)]
            missing = [p["name"] for p in tpl["parameters"] if p["value"] is None]
            if missing:
                problems.append(f"template {tpl['templateName']} has no value for {', '.join(missing)}")
        return problems

    def verify_ob(self, user_id: int, ob_id: int, body: Json) -> tuple[Json, str]:
        req = parse(s.Verify, body if body is not None else {}, "verify request")
        with self._change():
            rec = self._ob(user_id, ob_id)
            run = self._runs[rec["ob"]["runId"]]
            problems = self._verification(rec)
            stored = self.data["obs"][str(ob_id)]
            if req.submit and not problems:
                if run.mode == "VM":
                    if rec["ob"]["obStatus"] in s.VES_STATUSES:
                        raise P2ApiError(409, f"visitor OB {ob_id} is already in status {rec['ob']['obStatus']!r}")
                    stored["ob"]["obStatus"] = "+"
                else:
                    if rec["ob"]["obStatus"] not in ("P", "-"):
                        raise P2ApiError(409, f"service OB {ob_id} must be in status 'P' or '-' to be submitted")
                    stored["ob"]["obStatus"] = "D"
            stored["version"] += 1
            result = {"observable": not problems, "messages": problems or ["OB is observable"]}
        return result, self.get_ob(user_id, ob_id)[1]

    def revise_ob(self, user_id: int, ob_id: int) -> tuple[Json, str]:
        with self._change():
            rec = self._ob(user_id, ob_id)
            run = self._runs[rec["ob"]["runId"]]
            if run.mode == "SM" and rec["ob"]["obStatus"] != "D":
                raise P2ApiError(409, f"service OB {ob_id} can only be revised in status 'D'")
            stored = self.data["obs"][str(ob_id)]
            stored["ob"]["obStatus"] = "P"
            stored["version"] += 1
            self._drop_from_ves(ob_id)
        return self.get_ob(user_id, ob_id)

    # -- time constraints ----------------------------------------------------------------------------

    def get_time_constraints(self, user_id: int, ob_id: int, kind: str) -> tuple[Json, str]:
        with self._lock:
            rec = self._ob(user_id, ob_id)
            return copy.deepcopy(rec[kind]), _etag(kind, ob_id, rec[kind + "Version"])

    def save_time_constraints(self, user_id: int, ob_id: int, kind: str, body: Json,
                              if_match: str | None) -> tuple[Json, str]:
        if not isinstance(body, list):
            raise P2ApiError(400, "time constraints must be a list of {from, to} intervals")
        out: list[dict[str, str]]
        if kind == "abs":
            intervals = sorted((parse(s.AbsoluteInterval, i, f"interval {n}") for n, i in enumerate(body)),
                               key=lambda i: i.start)
            for i in intervals:
                if i.start >= i.end:
                    raise P2ApiError(400, f"interval {i.start.isoformat()}: from must be earlier than to")
            for a, b in itertools.pairwise(intervals):
                if b.start < a.end:
                    raise P2ApiError(400, f"intervals starting {a.start.isoformat()} and {b.start.isoformat()} overlap")
            out = [{"from": i.start.isoformat(timespec="minutes"), "to": i.end.isoformat(timespec="minutes")}
                   for i in intervals]
        else:
            lst = sorted((parse(s.SiderealInterval, i, f"interval {n}") for n, i in enumerate(body)),
                         key=lambda i: i.start)
            for sid in lst:
                if sid.start == "24:00" or sid.end == "00:00":
                    raise P2ApiError(400, "24:00 cannot start and 00:00 cannot end a sidereal interval")
            for x, y in itertools.pairwise(lst):
                # An interval may wrap through 24:00 (from > to); only ordered neighbours can be compared.
                if x.start <= x.end and y.start <= x.end:
                    raise P2ApiError(400, f"sidereal intervals starting {x.start} and {y.start} overlap")
            out = [{"from": sid.start, "to": sid.end} for sid in lst]
        with self._change():
            rec = self._ob(user_id, ob_id)
            self._check_etag(if_match, _etag(kind, ob_id, rec[kind + "Version"]), f"time constraints of OB {ob_id}")
            stored = self.data["obs"][str(ob_id)]
            stored[kind] = out
            stored[kind + "Version"] += 1
        return self.get_time_constraints(user_id, ob_id, kind)

    # -- templates -----------------------------------------------------------------------------------

    def _signature(self, name: str) -> TemplateSignature:
        sig = self._templates.get(name)
        if sig is None:
            raise P2ApiError(400, f"unknown template {name!r}; known: {', '.join(sorted(self._templates))}")
        return sig

    def _template_json(self, tpl: dict[str, Json]) -> Json:
        sig = self._signature(tpl["templateName"])
        params = []
        for p, value in zip(sig.parameters, tpl["parameters"], strict=True):
            entry: dict[str, Json] = {"name": p.name, "type": p.type, "value": value["value"]}
            if p.allowed is not None:
                entry["allowedValues"] = list(p.allowed)
            if p.minimum is not None:
                entry["minimum"] = p.minimum
                entry["maximum"] = p.maximum
            params.append(entry)
        return {"templateId": tpl["templateId"], "templateName": tpl["templateName"], "type": tpl["type"],
                "parameters": params}

    def get_templates(self, user_id: int, ob_id: int) -> tuple[Json, str]:
        with self._lock:
            rec = self._ob(user_id, ob_id)
            tpls = [self._template_json(self.data["templates"][str(t)]) for t in rec["templates"]]
            return tpls, _etag("tpls", ob_id, rec["templatesVersion"])

    def _template(self, user_id: int, ob_id: int, template_id: int) -> dict[str, Json]:
        rec = self._ob(user_id, ob_id)
        if template_id not in rec["templates"]:
            raise P2ApiError(404, f"OB {ob_id} has no template {template_id}")
        return dict(self.data["templates"][str(template_id)])

    def get_template(self, user_id: int, ob_id: int, template_id: int) -> tuple[Json, str]:
        with self._lock:
            tpl = self._template(user_id, ob_id, template_id)
            return self._template_json(tpl), _etag("tpl", template_id, tpl["version"])

    def create_template(self, user_id: int, ob_id: int, body: Json) -> tuple[Json, str]:
        req = parse(s.NewTemplate, body, "new template")
        sig = self._signature(req.templateName)
        with self._change():
            rec = self._ob(user_id, ob_id)
            kinds = [self.data["templates"][str(t)]["type"] for t in rec["templates"]]
            if sig.type == "acquisition" and "acquisition" in kinds:
                raise P2ApiError(400, f"OB {ob_id} already has an acquisition template")
            tid = self._new_id()
            self.data["templates"][str(tid)] = {
                "templateId": tid, "templateName": sig.name, "type": sig.type, "obId": ob_id, "version": 1,
                "parameters": [{"name": p.name, "value": p.default} for p in sig.parameters],
            }
            stored = self.data["obs"][str(ob_id)]
            # An acquisition template always comes first.
            if sig.type == "acquisition":
                stored["templates"].insert(0, tid)
            else:
                stored["templates"].append(tid)
            stored["templatesVersion"] += 1
            self._recompute_times(ob_id)
        return self.get_template(user_id, ob_id, tid)

    def save_template(self, user_id: int, ob_id: int, template_id: int, body: Json,
                      if_match: str | None) -> tuple[Json, str]:
        new = parse(s.TemplateBody, body, "template")
        with self._change():
            tpl = self._template(user_id, ob_id, template_id)
            self._check_etag(if_match, _etag("tpl", template_id, tpl["version"]), f"template {template_id}")
            if (new.templateId, new.templateName, new.type) != (template_id, tpl["templateName"], tpl["type"]):
                raise P2ApiError(400, "templateId, templateName and type cannot be changed")
            sig = self._signature(tpl["templateName"])
            given = {p.name: p.value for p in new.parameters}
            unknown = set(given) - {p.name for p in sig.parameters}
            if unknown:
                raise P2ApiError(400, f"template {sig.name} has no parameter(s) {', '.join(sorted(unknown))}")
            values = []
            for p, old in zip(sig.parameters, tpl["parameters"], strict=True):
                value = given.get(p.name, old["value"])
                values.append({"name": p.name, "value": _check_param(sig.name, p, value, old["value"])})
            stored = self.data["templates"][str(template_id)]
            stored["parameters"] = values
            stored["version"] += 1
            self._recompute_times(ob_id)
        return self.get_template(user_id, ob_id, template_id)

    def delete_template(self, user_id: int, ob_id: int, template_id: int, if_match: str | None) -> None:
        with self._change():
            tpl = self._template(user_id, ob_id, template_id)
            self._check_etag(if_match, _etag("tpl", template_id, tpl["version"]), f"template {template_id}")
            stored = self.data["obs"][str(ob_id)]
            stored["templates"].remove(template_id)
            stored["templatesVersion"] += 1
            del self.data["templates"][str(template_id)]
            self._recompute_times(ob_id)

    def _recompute_times(self, ob_id: int) -> None:
        stored = self.data["obs"][str(ob_id)]
        exposure = 0.0
        nexp_total = 0
        for tid in stored["templates"]:
            tpl = self.data["templates"][str(tid)]
            if tpl["type"] != "science":
                continue
            values = {p["name"]: p["value"] for p in tpl["parameters"]}
            nexp = int(values.get("SEQ.NEXP") or 1)
            exposure += float(values.get("SEQ.EXPTIME") or 0.0) * nexp
            nexp_total += nexp
        ob = stored["ob"]
        ob["exposureTime"] = round(exposure)
        has_acq = any(self.data["templates"][str(t)]["type"] == "acquisition" for t in stored["templates"])
        ob["executionTime"] = round(exposure + ACQUISITION_OVERHEAD_S * has_acq + PER_EXPOSURE_OVERHEAD_S * nexp_total)
        stored["version"] += 1

    # -- finding charts ------------------------------------------------------------------------------

    def chart_names(self, user_id: int, ob_id: int) -> tuple[Json, str]:
        with self._lock:
            rec = self._ob(user_id, ob_id)
            return [c["name"] for c in rec["charts"]], _etag("ob", ob_id, rec["version"])

    def chart_blob(self, user_id: int, ob_id: int, index: int) -> str:
        with self._lock:
            rec = self._ob(user_id, ob_id)
            if not 1 <= index <= len(rec["charts"]):
                raise P2ApiError(404, f"OB {ob_id} has no finding chart {index}")
            return str(rec["charts"][index - 1]["blob"])

    def add_chart(self, user_id: int, ob_id: int, name: str, content: bytes,
                  store: Callable[[str, bytes], object]) -> str:
        if len(content) > MAX_FINDING_CHART_BYTES:
            raise P2ApiError(400, f"finding chart {name!r} is {len(content)} bytes; the limit is 1 MB")
        if not content.startswith(b"\xff\xd8"):
            raise P2ApiError(400, f"finding chart {name!r} is not a JPEG image")
        with self._change():
            rec = self._ob(user_id, ob_id)
            if len(rec["charts"]) >= MAX_FINDING_CHARTS:
                raise P2ApiError(400, f"OB {ob_id} already has {MAX_FINDING_CHARTS} finding charts")
            blob = f"{ob_id}-{secrets.token_hex(8)}.jpg"
            store(blob, content)
            stored = self.data["obs"][str(ob_id)]
            stored["charts"].append({"name": name, "blob": blob})
            stored["version"] += 1
            return _etag("ob", ob_id, stored["version"])

    def delete_chart(self, user_id: int, ob_id: int, index: int) -> str:
        with self._change():
            blob = self.chart_blob(user_id, ob_id, index)
            stored = self.data["obs"][str(ob_id)]
            del stored["charts"][index - 1]
            stored["version"] += 1
            return blob

    # -- visitor execution sequence -------------------------------------------------------------------

    def _ves_key(self, user_id: int, instrument: str) -> str:
        return f"{user_id}:{instrument}"

    def _ves_entry(self, ob_id: int) -> Json:
        ob = self.data["obs"][str(ob_id)]["ob"]
        run = self._runs[ob["runId"]]
        return {"obId": ob_id, "name": ob["name"], "obStatus": ob["obStatus"], "runId": run.run_id,
                "progId": run.prog_id, "targetName": ob["target"]["name"], "executionTime": ob["executionTime"],
                "instrument": run.instrument}

    def _known_instrument(self, instrument: str) -> None:
        if instrument not in {r.instrument for r in self._runs.values()}:
            raise P2ApiError(404, f"unknown instrument {instrument!r}")

    def get_ves(self, user_id: int, instrument: str) -> tuple[Json, str]:
        self._known_instrument(instrument)
        with self._lock:
            ves = self.data["ves"].get(self._ves_key(user_id, instrument), {"obIds": [], "version": 0})
            return ([self._ves_entry(i) for i in ves["obIds"]],
                    _etag("ves", self._ves_key(user_id, instrument), ves["version"]))

    def save_ves(self, user_id: int, instrument: str, body: Json, if_match: str | None) -> tuple[Json, str]:
        self._known_instrument(instrument)
        if not isinstance(body, list):
            raise P2ApiError(400, "the execution sequence must be a list of {obId} objects")
        ob_ids = [parse(s.VesEntry, e, f"execution sequence entry {n}").obId for n, e in enumerate(body)]
        duplicated = sorted({i for i in ob_ids if ob_ids.count(i) > 1})
        if duplicated:
            raise P2ApiError(400, f"OB(s) {', '.join(map(str, duplicated))} appear more than once in the sequence")
        with self._change():
            key = self._ves_key(user_id, instrument)
            ves = self.data["ves"].setdefault(key, {"obIds": [], "version": 0})
            self._check_etag(if_match, _etag("ves", key, ves["version"]), f"execution sequence {instrument}")
            for ob_id in ob_ids:
                ob = self._ob(user_id, ob_id)["ob"]
                run = self._runs[ob["runId"]]
                if run.instrument != instrument:
                    raise P2ApiError(400, f"OB {ob_id} is for {run.instrument}, not {instrument}")
                if run.mode != "VM":
                    raise P2ApiError(400, f"OB {ob_id} is a service mode OB; only visitor mode OBs can be sequenced")
                if ob["obStatus"] not in s.VES_STATUSES:
                    raise P2ApiError(400, f"OB {ob_id} is in status {ob['obStatus']!r}; only OBs in status "
                                          "'+', 'A', 'X' or 'S' can be in the execution sequence (verify it first)")
            ves["obIds"] = ob_ids
            ves["version"] += 1
        return self.get_ves(user_id, instrument)

    # -- executions -----------------------------------------------------------------------------------

    def record_execution(self, user_id: int, instrument: str, body: Json) -> tuple[Json, str]:
        """Record (or bring up to date) one execution of an OB; its status follows the execution's.

        An execution is named by its OB and start time: sending it again (a retry after a lost answer,
        or the end of an execution already reported as started) updates it instead of adding another.
        A finished execution stays finished: a late "started" for it changes nothing.
        """
        rec_in = parse(s.ExecutionRecord, body, "execution")
        if rec_in.end is not None and rec_in.end < rec_in.start:
            raise P2ApiError(400, f"execution of OB {rec_in.obId}: 'to' is earlier than 'from'")
        if rec_in.status != "started" and rec_in.end is None:
            raise P2ApiError(400, f"execution of OB {rec_in.obId}: a {rec_in.status} execution needs 'to'")
        start = rec_in.start.astimezone(UTC).isoformat()
        with self._change():
            rec = self._ob(user_id, rec_in.obId)
            if self._runs[rec["ob"]["runId"]].instrument != instrument:
                raise P2ApiError(400, f"OB {rec_in.obId} is not an {instrument} OB")
            stored = self.data["obs"][str(rec_in.obId)]
            entry = next((e for e in self.data["executions"] if e["obId"] == rec_in.obId and e["from"] == start), None)
            if entry is not None and entry["status"] != "started":
                return dict(entry), _etag("ob", rec_in.obId, stored["version"])
            if entry is None:
                entry = {"obId": rec_in.obId, "night": rec_in.night, "instrument": instrument, "from": start}
                self.data["executions"].append(entry)
            entry.update(night=rec_in.night, to=None if rec_in.end is None else rec_in.end.astimezone(UTC).isoformat(),
                         status=rec_in.status)
            stored["ob"]["obStatus"] = EXECUTION_STATUS[rec_in.status]
            stored["version"] += 1
            for ves in self.data["ves"].values():
                if rec_in.obId in ves["obIds"]:
                    ves["version"] += 1
        return dict(entry), _etag("ob", rec_in.obId, stored["version"])

    def ob_executions(self, user_id: int, ob_id: int, night: str) -> tuple[Json, None]:
        with self._lock:
            self._ob(user_id, ob_id)
            return [e for e in self.data["executions"] if e["obId"] == ob_id and e["night"] == night], None

    def night_executions(self, user_id: int, instrument: str, night: str) -> tuple[Json, None]:
        self._known_instrument(instrument)
        with self._lock:
            out = []
            for e in self.data["executions"]:
                if e["instrument"] != instrument or e["night"] != night:
                    continue
                ob = self.data["obs"].get(str(e["obId"]))
                if ob is not None and self._may_use(user_id, self._runs[ob["ob"]["runId"]]):
                    out.append(e)
            return out, None


def _check_param(template: str, p: Any, value: Any, old: Any) -> Any:
    where = f"template {template} parameter {p.name}"
    if value is None:
        if old is not None:
            raise P2ApiError(400, f"{where}: a value cannot be unset to null")
        return None
    if p.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise P2ApiError(400, f"{where}: {value!r} is not an integer")
    elif p.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise P2ApiError(400, f"{where}: {value!r} is not a number")
        value = float(value)
    elif not isinstance(value, str):
        raise P2ApiError(400, f"{where}: {value!r} is not a string")
    if p.allowed is not None and value not in p.allowed:
        raise P2ApiError(400, f"{where}: {value!r} is not one of {', '.join(p.allowed)}")
    if p.minimum is not None and not p.minimum <= value <= p.maximum:
        raise P2ApiError(400, f"{where}: {value} is outside [{p.minimum}, {p.maximum}]")
    return value
