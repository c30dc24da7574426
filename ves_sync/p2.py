"""The adapter to ESO P2 through the real p2api client: a local environment for the emulator, and `P2Client`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import p2api
import requests
from p2api import p2api as p2api_module

Json = Any
_tables_lock = threading.Lock()


class P2CallError(Exception):
    """A P2 call was refused: HTTP status, what was called, and P2's own message."""

    def __init__(self, status: int, method: str, url: str, message: str) -> None:
        super().__init__(f"P2 {method} {url} → {status}: {message}")
        self.status = status
        self.method = method
        self.url = url
        self.message = message


class P2UnreachableError(ConnectionError):
    """The P2 service could not be reached at all (down, refused, timed out)."""


def register_environment(name: str, api_url: str, login_url: str) -> None:
    """Add environment `name` to p2api's URL tables, so `ApiConnection(name, ...)` reaches `api_url`.

    p2api only knows ESO's fixed URLs and refuses other environment names; its tables are plain
    module-level dicts, so registering an entry (instead of patching the package) is enough.
    """
    if name in ("production", "production_lasilla", "demo"):
        raise ValueError(f"environment {name!r} is one of ESO's own and cannot be redefined")
    root = login_url.rsplit("/api/", 1)[0]
    with _tables_lock:
        p2api_module.API_URL[name] = api_url.rstrip("/")
        p2api_module.LOGIN_URL[name] = login_url
        p2api_module.P2FC_URL[name] = root + "/p2fc/"
        p2api_module.GRRMAPI_URL[name] = root + "/grrmapi/v1"


@dataclass(frozen=True)
class P2Account:
    """Where and as whom to log in: an environment (ESO's or a registered local one) and credentials."""

    environment: str
    username: str
    password: str


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, p2api.P2Error):
        args = [*exc.args, "", "", "", ""]
        status = args[0] if isinstance(args[0], int) else 500
        return P2CallError(status, str(args[1]), str(args[2]), str(args[3]))
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return P2UnreachableError(f"P2 is unreachable: {exc}")
    return exc


class P2Client:
    """One logged-in P2 user over p2api (synchronous: call it from a worker thread, never the event loop).

    Errors come out as `P2CallError` (with the HTTP status, e.g. 412 for a stale ETag) or
    `P2UnreachableError`. A 401 (token lost when the server restarted) logs in again once.
    """

    def __init__(self, account: P2Account, *, timeout_s: float = 10.0) -> None:
        self.account = account
        self.timeout_s = timeout_s
        self._api: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        try:
            api = p2api.ApiConnection(self.account.environment, self.account.username, self.account.password)
        except Exception as exc:
            raise _translate(exc) from exc
        return api

    def _call(self, method: str, *args: Any) -> tuple[Json, str | None]:
        with self._lock:
            for attempt in (1, 2):
                if self._api is None:
                    self._api = self._connect()
                try:
                    result: tuple[Json, str | None] = getattr(self._api, method)(*args)
                    return result
                except Exception as exc:
                    err = _translate(exc)
                    if isinstance(err, P2CallError) and err.status == 401 and attempt == 1:
                        self._api = None
                        continue
                    if isinstance(err, P2UnreachableError):
                        self._api = None
                    raise err from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.session.close()
            self._api = None

    # Thin, typed forwards to p2api (names follow p2api's).
    def get_user(self) -> Json:
        return self._call("getUser")[0]

    def get_runs(self) -> Json:
        return self._call("getRuns")[0]

    def get_run(self, run_id: int) -> Json:
        return self._call("getRun", run_id)[0]

    def get_items(self, container_id: int) -> tuple[Json, str | None]:
        return self._call("getItems", container_id)

    def get_ob_summary(self, container_id: int) -> tuple[Json, str | None]:
        return self._call("getOBSummary", container_id)

    def create_ob(self, container_id: int, name: str) -> tuple[Json, str | None]:
        return self._call("createOB", container_id, name)

    def get_ob(self, ob_id: int) -> tuple[Json, str | None]:
        return self._call("getOB", ob_id)

    def save_ob(self, ob: Json, etag: str | None) -> tuple[Json, str | None]:
        return self._call("saveOB", ob, etag)

    def delete_ob(self, ob_id: int, etag: str | None) -> None:
        self._call("deleteOB", ob_id, etag)

    def verify_ob(self, ob_id: int, submit: bool) -> tuple[Json, str | None]:
        return self._call("verifyOB", ob_id, submit)

    def revise_ob(self, ob_id: int) -> tuple[Json, str | None]:
        return self._call("reviseOB", ob_id)

    def get_templates(self, ob_id: int) -> tuple[Json, str | None]:
        return self._call("getTemplates", ob_id)

    def get_template(self, ob_id: int, template_id: int) -> tuple[Json, str | None]:
        return self._call("getTemplate", ob_id, template_id)

    def create_template(self, ob_id: int, name: str) -> tuple[Json, str | None]:
        return self._call("createTemplate", ob_id, name)

    def set_template_params(self, ob_id: int, template: Json, params: dict[str, Any],
                            etag: str | None) -> tuple[Json, str | None]:
        return self._call("setTemplateParams", ob_id, template, params, etag)

    def get_absolute_time_constraints(self, ob_id: int) -> tuple[Json, str | None]:
        return self._call("getAbsoluteTimeConstraints", ob_id)

    def save_absolute_time_constraints(self, ob_id: int, intervals: Json, etag: str | None) -> tuple[Json, str | None]:
        return self._call("saveAbsoluteTimeConstraints", ob_id, intervals, etag)

    def get_execution_sequence(self, instrument: str) -> tuple[Json, str | None]:
        return self._call("getExecutionSequence", instrument)

    def save_execution_sequence(self, instrument: str, ob_ids: list[int], etag: str | None) -> tuple[Json, str | None]:
        return self._call("saveExecutionSequence", instrument, [{"obId": i} for i in ob_ids], etag)

    def get_night_executions(self, instrument: str, night: str) -> Json:
        return self._call("getNightExecutions", instrument, night)[0]

    def get_ob_executions(self, ob_id: int, night: str) -> Json:
        return self._call("getOBExecutions", ob_id, night)[0]

    def record_execution(self, instrument: str, execution: Json) -> Json:
        """Report an execution (the emulator's `POST /executions/{instrument}`; real P2 learns it from the observatory).

        p2api has no method for it, so this goes through p2api's own generic `post` (same session, same errors).
        """
        return self._call("post", f"/executions/{instrument}", execution)[0]
