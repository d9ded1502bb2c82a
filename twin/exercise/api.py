"""The exercise's JSON API under ``/api/v1/`` (Flask routes on the dashboard's server).

Every route needs ``Authorization: Bearer <seat token>`` (401 otherwise). The seat decides what a
request may do: decision kinds outside the seat's ``kinds`` are refused with 403, and so is the
clock for a seat without ``control``. Bad input — malformed JSON, an unknown kind, a field out of
range, coordinates off the map, a time in the past, an oversize body — is answered 4xx with a JSON
``{"error": ..., "field": ...}``, never a traceback. The OpenAPI 3 description is
``/api/v1/openapi.json`` (:data:`OPENAPI`).

The web server and the simulation live in different processes: :class:`SessionClient` sends each
request down a pipe to the session (:mod:`twin.exercise.session`), which answers between coupling
steps; ``GET /api/v1/session`` is answered at once from the last status the session published.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import threading
from typing import Any

__all__ = ["SessionClient", "register_api", "token_hash", "OPENAPI", "MAX_BODY_BYTES"]

#: largest request body the API reads [bytes]
MAX_BODY_BYTES = 64_000
#: seconds a request waits for the session (a long coupling step is the most it waits normally)
REQUEST_TIMEOUT_S = 60.0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def json_safe(obj: Any) -> Any:
    """Non-finite floats to None, tuples to lists, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return json_safe(obj.item())
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


class SessionClient:
    """The server's end of the session pipes: requests with ids, answers matched by a reader thread,
    and the session's latest status."""

    def __init__(self, inbox: Any, outbox: Any, process: Any = None, run_dir: str = ""):
        self._in, self._out = inbox, outbox        # receive from / send to the session
        self.process = process
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[threading.Event, list]] = {}
        self.status: dict[str, Any] = {"state": "building", "t_s": 0.0, "run_dir": run_dir, "error": None}
        self.alive = True
        self.changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="exercise-session-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._in.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "status":
                with self.changed:
                    self.status = msg[1]
                    self.changed.notify_all()
            elif msg[0] == "resp":
                w = self._waiting.pop(msg[1], None)
                if w is not None:
                    w[1].append((msg[2], msg[3]))
                    w[0].set()
            elif msg[0] == "bye":
                break
        self.alive = False
        for ev, _ in list(self._waiting.values()):
            ev.set()
        with self.changed:
            self.changed.notify_all()

    def request(self, seat: str, op: str, payload: Any = None, timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, Any]:
        if not self.alive:
            return 503, {"error": "the exercise session has ended"}
        if self.status.get("state") == "building" and op != "session":
            return 409, {"error": "the session is still building the twin; try again in a moment"}
        rid = next(self._ids)
        ev, box = threading.Event(), []  # type: threading.Event, list[tuple[int, Any]]
        self._waiting[rid] = (ev, box)
        try:
            with self._lock:
                self._out.send(("req", rid, seat, op, payload))
        except (OSError, EOFError, ValueError):
            self._waiting.pop(rid, None)
            return 503, {"error": "the exercise session has ended"}
        if not ev.wait(timeout) or not box:
            self._waiting.pop(rid, None)
            return 503, {"error": "the session did not answer in time (a long coupling step?); try again"}
        return box[0]

    def wait_for(self, states: tuple[str, ...], timeout: float) -> dict:
        """Block until the status is in ``states`` (or the timeout): the last status."""
        import time

        end = time.monotonic() + timeout
        with self.changed:
            while self.status.get("state") not in states and self.alive:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
        return self.status

    def stop(self, timeout: float = 120.0) -> None:
        """Ask the session to stop (it writes a checkpoint when unfinished), then wait for it."""
        try:
            with self._lock:
                self._out.send(("stop",))
        except (OSError, EOFError, ValueError):
            pass
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(10)
        self._reader.join(5)


def register_api(server: Any, client: SessionClient, seats: dict[str, dict], *,
                 max_body: int = MAX_BODY_BYTES) -> None:
    """Add the ``/api/v1`` routes to the Flask ``server``. ``seats``: name → ``{"token_sha256",
    "kinds", "control"}`` (as ``seats.json``)."""
    import flask

    from twin.decisions import DECISION_TYPES

    bp = flask.Blueprint("exercise_api_v1", __name__, url_prefix="/api/v1")
    hashes = [(name, str(s["token_sha256"])) for name, s in seats.items()]

    def answer(code: int, body: Any) -> flask.Response:
        text = json.dumps(json_safe(body), ensure_ascii=False, allow_nan=False)
        resp = flask.Response(text, status=code, mimetype="application/json")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        if code == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="twin exercise"'
        return resp

    def seat_of_request() -> str | None:
        h = flask.request.headers.get("Authorization", "")
        if not h.startswith("Bearer ") or len(h) > 512:
            return None
        got = token_hash(h[7:].strip())
        found = None
        for name, want in hashes:      # compare with every seat (constant time each)
            if hmac.compare_digest(got, want):
                found = name
        return found

    def body() -> tuple[dict | None, flask.Response | None]:
        n = flask.request.content_length
        if n is not None and n > max_body:
            return None, answer(413, {"error": f"the request body is {n} bytes; at most {max_body} are read"})
        try:
            raw = flask.request.stream.read(max_body + 1)
        except Exception:  # a body cut short by the client
            return None, answer(400, {"error": "the request body could not be read"})
        if len(raw) > max_body:
            return None, answer(413, {"error": f"the request body exceeds {max_body} bytes"})
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None, answer(400, {"error": "the request body is not UTF-8 text"})
        except RecursionError:
            return None, answer(400, {"error": "the request body is nested too deeply"})
        except ValueError as exc:
            return None, answer(400, {"error": f"the request body is not valid JSON ({exc})"})
        if not isinstance(data, dict):
            return None, answer(422, {"error": f"the request body must be a JSON object, got {type(data).__name__}",
                                      "field": None})
        return data, None

    @bp.before_request
    def _auth():
        seat = seat_of_request()
        if seat is None:
            return answer(401, {"error": "a seat token is needed: Authorization: Bearer <token> (printed when "
                                         "twin exercise started)"})
        flask.g.exercise_seat = seat
        return None

    def me() -> dict:
        name = flask.g.exercise_seat
        s = seats[name]
        return {"seat": name, "kinds": list(s["kinds"]), "control": bool(s.get("control"))}

    def forward(op: str, payload: Any = None) -> flask.Response:
        code, out = client.request(flask.g.exercise_seat, op, payload)
        return answer(code, out)

    @bp.get("/openapi.json")
    def openapi():
        return answer(200, OPENAPI)

    @bp.get("/session")
    def session():
        st = dict(client.status)
        if not client.alive and st.get("state") not in ("finished", "failed"):
            st["state"] = "stopped"
        return answer(200, {**st, **me()})

    @bp.post("/control")
    def control():
        if not seats[flask.g.exercise_seat].get("control"):
            return answer(403, {"error": f"seat {flask.g.exercise_seat!r} does not steer the clock (the "
                                         "'control' seat and roles with control: true do)"})
        data, err = body()
        if err is not None:
            return err
        return forward("control", data)

    @bp.get("/decisions")
    def decisions_get():
        return forward("decisions")

    @bp.post("/decisions")
    def decisions_post():
        data, err = body()
        if err is not None:
            return err
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in DECISION_TYPES:
            return answer(422, {"error": f"type: unknown decision kind (value {str(kind)[:60]!r}); kinds are "
                                         f"{', '.join(sorted(DECISION_TYPES))}", "field": "type"})
        allowed = seats[flask.g.exercise_seat]["kinds"]
        if kind not in allowed:
            return answer(403, {"error": f"seat {flask.g.exercise_seat!r} may not issue {kind!r} (it may issue: "
                                         f"{', '.join(allowed) or 'nothing'})", "field": "type"})
        return forward("decide", data)

    @bp.get("/incidents")
    def incidents():
        return forward("incidents")

    @bp.get("/units")
    def units():
        return forward("units")

    @bp.get("/kpis")
    def kpis():
        return forward("kpis")

    known = {"openapi.json", "session", "control", "decisions", "incidents", "units", "kpis"}

    @bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def elsewhere(rest: str):
        # under /api/ nothing falls through to the dashboard's pages
        if rest.strip("/") in known:
            return answer(405, {"error": f"{flask.request.method} is not allowed on /api/v1/{rest.strip('/')}"})
        return answer(404, {"error": f"no route /api/v1/{rest[:100]} (see /api/v1/openapi.json)"})

    server.register_blueprint(bp)

    # the API's own errors are JSON too (unknown route, wrong method, body too large for the server)
    from werkzeug.exceptions import HTTPException

    def _json_errors(exc: HTTPException):
        if flask.request.path.startswith("/api/"):
            return answer(exc.code or 400, {"error": f"{exc.name}: {exc.description}"})
        return exc

    for code in (400, 404, 405, 413):
        server.register_error_handler(code, _json_errors)


_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON_OBJ = {"application/json": {"schema": {"type": "object"}}}

#: the OpenAPI 3 description served at /api/v1/openapi.json
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Tam Kỳ Twin exercise API", "version": "1",
             "description": "Steer a running flood-response exercise (twin exercise). Every route needs a seat's "
                            "bearer token (printed when the exercise starts). Times are model seconds since the "
                            "scenario start; local clock times are Asia/Ho_Chi_Minh (UTC+7)."},
    "servers": [{"url": "/api/v1"}],
    "security": [{"seat": []}],
    "components": {
        "securitySchemes": {"seat": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string", "description": "what is wrong, naming the field and the value"},
                "field": {"type": "string", "nullable": True}}},
            "Session": {"type": "object", "required": ["state", "t_s", "speed", "run_dir"], "properties": {
                "state": {"type": "string", "enum": ["building", "running", "paused", "finished", "failed",
                                                     "stopped"]},
                "t_s": {"type": "number", "description": "model time reached [s since start]"},
                "clock_local": {"type": "string", "description": "model time as local clock time (ISO-8601, +07:00)"},
                "speed": {"type": "number", "description": "model seconds per wall second"},
                "run_dir": {"type": "string"},
                "dt_s": {"type": "number", "description": "coupling step: decisions act at its boundaries"},
                "stop_time_s": {"type": "number"},
                "injects": {"type": "array", "items": {"type": "object"}, "description": "injects fired so far"},
                "injects_left": {"type": "integer"},
                "lag_steps": {"type": "object", "description": "model time behind the paced target, in coupling "
                                                               "steps (last, max, p95, steps, over_one: steps more than one step behind)"},
                "objectives": {"type": "array", "items": {"type": "object"}, "description": "when finished"},
                "seat": {"type": "string"}, "kinds": {"type": "array", "items": {"type": "string"}},
                "control": {"type": "boolean"}}},
            "Control": {"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": ["pause", "resume", "speed", "next_inject"]},
                "value": {"type": "number", "description": "speed: model seconds per wall second (0, 100000]"}}},
            "Decision": {"type": "object", "required": ["type"], "additionalProperties": True,
                         "description": "a decision with the same keys as a scenario's interventions entry "
                                        "(docs/reference/decisions.md); 'at' (model seconds, or e.g. '2h') "
                                        "defaults to now",
                         "properties": {"type": {"type": "string"}, "at": {"oneOf": [{"type": "number"},
                                                                                     {"type": "string"}]}}},
            "Accepted": {"type": "object", "properties": {
                "decision_id": {"type": "integer"}, "type": {"type": "string"}, "issuer": {"type": "string"},
                "at_s": {"type": "number"}, "acts_at_s": {"type": "number",
                                                          "description": "the model time it will act at"},
                "queued_t_s": {"type": "number", "description": "the model time when it was queued: the start "
                               "of the next coupling step (acts_at_s equals it for a decision for now)"},
                "acts_at_local": {"type": "string"}, "status": {"type": "string"}}},
        },
    },
    "paths": {
        "/session": {"get": {"summary": "the session's state, clock and injects; the caller's seat",
                             "responses": {"200": {"description": "ok", "content": {"application/json": {
                                 "schema": {"$ref": "#/components/schemas/Session"}}}}, "401": _ERR}}},
        "/control": {"post": {"summary": "pause, resume, change the speed or jump to the next inject",
                              "requestBody": {"required": True, "content": {"application/json": {
                                  "schema": {"$ref": "#/components/schemas/Control"}}}},
                              "responses": {"200": {"description": "the new state", "content": _JSON_OBJ},
                                            "400": _ERR, "401": _ERR, "403": _ERR, "409": _ERR, "413": _ERR,
                                            "422": _ERR}}},
        "/decisions": {
            "get": {"summary": "decisions that acted or were refused, and those pending",
                    "responses": {"200": {"description": "ok", "content": _JSON_OBJ}, "401": _ERR}},
            "post": {"summary": "issue a decision (acts at the start of the coupling step holding its time)",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Decision"}}}},
                     "responses": {"202": {"description": "queued", "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Accepted"}}}},
                         "400": _ERR, "401": _ERR, "403": _ERR, "409": _ERR, "413": _ERR, "422": _ERR}}},
        "/incidents": {"get": {"summary": "emergency calls and their handling so far",
                               "responses": {"200": {"description": "ok", "content": _JSON_OBJ}, "401": _ERR}}},
        "/units": {"get": {"summary": "emergency units where they are now (along their route while moving)",
                           "responses": {"200": {"description": "ok", "content": _JSON_OBJ}, "401": _ERR}}},
        "/kpis": {"get": {"summary": "live indicators: flooded area, people states, services, roads, decisions",
                          "responses": {"200": {"description": "ok", "content": _JSON_OBJ}, "401": _ERR}}},
        "/openapi.json": {"get": {"summary": "this document",
                                  "responses": {"200": {"description": "ok", "content": _JSON_OBJ}}}},
    },
}
