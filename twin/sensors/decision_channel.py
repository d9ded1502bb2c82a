"""Decisions for a running live twin over MQTT: a request topic the live twin always subscribes to,
and an acknowledgement topic it answers on (docs/design/opswarn-issue-warning.md).

``twin live`` for the run folder ``RUN`` subscribes to ``twin/RUN/decisions`` (:func:`decisions_topic`)
on the broker it ingests from, with a clean session: a request sent while no live twin listens is
lost, and the sender hears nothing (no stale decision acts hours later). A request is JSON
(:class:`DecisionRequest`): a request id, the decision (the keys of ``twin.decisions``), the source
and issuer to log. The live twin answers on ``twin/RUN/decisions/ack`` (:class:`DecisionAck`):

- ``received`` as soon as the request arrives and its envelope validates;
- ``accepted`` with the ``decision_id`` (its row in ``decisions.parquet``) and the model time it
  acts at, once the twin submitted it between coupling steps (``Simulation.submit``: validated
  against the twin);
- ``refused`` with the message (naming the field) when the envelope or the decision is invalid.

Nothing in a request is executed or used as a path: the envelope and the decision are pydantic
models (unknown keys refused), and the payload is limited to :data:`MAX_REQUEST_BYTES`.
:func:`send_decision` is the sender's side (the dashboard's Operations page uses it).
"""
from __future__ import annotations

import datetime as _dt
import json
import queue
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["decisions_topic", "ack_topic", "DecisionRequest", "DecisionAck", "DecisionInbox", "send_decision",
           "ChannelError", "MAX_REQUEST_BYTES", "DEFAULT_TIMEOUT_S"]

#: largest request payload the live twin reads [bytes]
MAX_REQUEST_BYTES = 64_000
#: seconds a sender waits for the live twin's answer (a long coupling step is the most it waits)
DEFAULT_TIMEOUT_S = 20.0
_BAD_TOPIC_CHARS = "+#/\0"


class ChannelError(ValueError):
    """The decision did not reach a live twin (no broker, nobody listening, no answer in time)."""


def _level(run_id: str) -> str:
    name = "".join("_" if c in _BAD_TOPIC_CHARS else c for c in str(run_id))
    if not name:
        raise ValueError("decisions topic: empty run id")
    return name


def decisions_topic(run_id: str) -> str:
    """The topic the live twin of run folder ``run_id`` (its folder name) takes decisions on."""
    return f"twin/{_level(run_id)}/decisions"


def ack_topic(run_id: str) -> str:
    """The topic the live twin of ``run_id`` answers requests on."""
    return f"{decisions_topic(run_id)}/ack"


class DecisionRequest(BaseModel):
    """What a sender publishes on :func:`decisions_topic`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="uuid4 hex, chosen by the sender")
    decision: dict[str, Any] = Field(description="a decision: the keys of twin.decisions (type, fields)")
    source: Literal["dashboard", "api"] = "dashboard"
    issuer: str = Field("", max_length=200, description="who issued it, logged in decisions.parquet")
    at_s: float | None = Field(None, allow_inf_nan=False, description="model time; none: the next coupling step")


class DecisionAck(BaseModel):
    """What the live twin answers on :func:`ack_topic`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str
    run: str
    status: Literal["received", "accepted", "refused"]
    decision_id: int | None = None
    acts_at_s: float | None = None
    acts_at_local: str | None = None
    message: str = ""
    field: str | None = None


def _broker(url: str) -> tuple[str, int]:
    from twin.forecast.cap import _broker as parse

    return parse(url)


def _mqtt_client(client_id: str = ""):
    import paho.mqtt.client as mqtt

    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                       clean_session=True)


def _request_id_of(payload: bytes) -> str:
    """The request id of a payload that did not validate, when one can be read (else "")."""
    try:
        rid = json.loads(payload).get("request_id")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    return rid if isinstance(rid, str) and len(rid) == 32 and all(c in "0123456789abcdef" for c in rid) else ""


class DecisionInbox:
    """The live twin's end: subscribed to :func:`decisions_topic` of ``run_id``; requests queue until
    :meth:`drain` submits them (main thread, between coupling steps) and answers each one."""

    def __init__(self, broker: str, run_id: str, client_id: str = "twin-live-decisions", keep: int = 1000):
        self.host, self.port = _broker(broker)
        self.run_id = str(run_id)
        self.topic, self.ack = decisions_topic(run_id), ack_topic(run_id)
        self.queue: queue.Queue = queue.Queue()
        self.arrived = threading.Event()
        self.subscribed = threading.Event()
        self.answers: OrderedDict[str, DecisionAck] = OrderedDict()   # request id -> final answer (redeliveries)
        self.keep = keep
        self.client = _mqtt_client(client_id)
        self.client.on_connect = lambda c, *a, **k: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_message = self._on_message

    def start(self) -> DecisionInbox:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise ValueError(f"decisions channel: cannot connect to mqtt://{self.host}:{self.port} "
                             f"({exc.strerror or exc})") from None
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _answer(self, ack: DecisionAck) -> None:
        self.client.publish(self.ack, ack.model_dump_json(), qos=1)

    def _refuse(self, rid: str, message: str, field: str | None = None) -> DecisionAck:
        return DecisionAck(request_id=rid, run=self.run_id, status="refused", message=message[:2000], field=field)

    def _on_message(self, client, userdata, msg) -> None:
        payload = bytes(msg.payload)
        if len(payload) > MAX_REQUEST_BYTES:
            self._answer(self._refuse(_request_id_of(payload[:200]), f"request: larger than {MAX_REQUEST_BYTES} bytes"))
            return
        try:
            req = DecisionRequest.model_validate_json(payload)
        except ValidationError as exc:
            e = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in e.get("loc", ())) or None
            why = "unknown field" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
            self._answer(self._refuse(_request_id_of(payload), f"request.{field or '<body>'}: {why}", field))
            return
        done = self.answers.get(req.request_id)
        if done is not None:          # a redelivery (QoS 1): the same answer again, submitted once
            self._answer(done)
            return
        self._answer(DecisionAck(request_id=req.request_id, run=self.run_id, status="received"))
        self.queue.put(req)
        self.arrived.set()

    def drain(self, sim: Any, start: _dt.datetime | None = None) -> list[DecisionAck]:
        """Submit every queued request to ``sim`` (a :class:`twin.simulation.Simulation` between steps)
        and answer it; returns the answers. ``start``: the scenario's local start (for ``acts_at_local``)."""
        from twin.decisions import DecisionError, parse_decision

        self.arrived.clear()
        out = []
        while True:
            try:
                req = self.queue.get_nowait()
            except queue.Empty:
                break
            if req.request_id in self.answers:     # redelivered before the first was submitted
                self._answer(self.answers[req.request_id])
                continue
            try:
                dec = parse_decision(req.decision)
                t = float(sim.time if req.at_s is None else req.at_s)
                stop = getattr(sim, "stop_time", None)
                if not getattr(sim, "running", True):
                    raise ValueError("the live run is stopping: the decision would never act")
                if stop is not None and sim.acts_at(t) >= float(stop):
                    raise ValueError(f"the live run ends at model time {float(stop):g} s: a decision for "
                                     f"{t:g} s would never act")
                p = sim.submit(dec, req.at_s, source=req.source, issuer=req.issuer)
                acts = float(sim.acts_at(p.at))
                ack = DecisionAck(request_id=req.request_id, run=self.run_id, status="accepted",
                                  decision_id=int(p.seq), acts_at_s=acts,
                                  acts_at_local=str(start + _dt.timedelta(seconds=acts)) if start else None,
                                  message=f"{dec.type} queued: acts at model time {acts:g} s")
            except DecisionError as exc:
                ack = self._refuse(req.request_id, str(exc), exc.field)
            except ValueError as exc:
                ack = self._refuse(req.request_id, f"decision: {exc}")
            self.answers[req.request_id] = ack
            while len(self.answers) > self.keep:
                self.answers.popitem(last=False)
            self._answer(ack)
            out.append(ack)
        return out


def send_decision(broker: str, run_id: str, decision: dict, *, issuer: str = "", source: str = "dashboard",
                  at_s: float | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DecisionAck:
    """Publish ``decision`` to the live twin of ``run_id`` and wait for its answer: the ``accepted``
    or ``refused`` :class:`DecisionAck`, or a ``received`` one when the twin got the request but did
    not reach the end of its coupling step within ``timeout_s``. :class:`ChannelError` when the
    broker cannot be reached or no live twin answered."""
    req = DecisionRequest(request_id=uuid.uuid4().hex, decision=dict(decision), source=source,  # type: ignore[arg-type]
                          issuer=issuer, at_s=at_s)
    host, port = _broker(broker)
    got: dict[str, DecisionAck] = {}
    final = threading.Event()
    subscribed = threading.Event()

    def on_message(client, userdata, msg):
        try:
            ack = DecisionAck.model_validate_json(bytes(msg.payload))
        except ValidationError:
            return
        if ack.request_id == req.request_id:
            got[ack.status] = ack
            if ack.status != "received":
                final.set()

    c = _mqtt_client()
    c.on_message = on_message
    c.on_subscribe = lambda *a, **k: subscribed.set()
    try:
        c.connect(host, port, keepalive=30)
    except OSError as exc:
        raise ChannelError(f"cannot reach the broker mqtt://{host}:{port} ({exc.strerror or exc})") from None
    c.loop_start()
    try:
        t_end = time.monotonic() + float(timeout_s)
        c.subscribe(ack_topic(run_id), qos=1)
        if not subscribed.wait(max(0.1, min(10.0, t_end - time.monotonic()))):
            raise ChannelError(f"the broker mqtt://{host}:{port} did not confirm the subscription to "
                               f"{ack_topic(run_id)}")
        info = c.publish(decisions_topic(run_id), req.model_dump_json(), qos=1)
        info.wait_for_publish(max(0.1, t_end - time.monotonic()))
        if not info.is_published():
            raise ChannelError(f"the broker mqtt://{host}:{port} did not acknowledge the request")
        final.wait(max(0.0, t_end - time.monotonic()))
    finally:
        c.disconnect()
        c.loop_stop()
    for status in ("accepted", "refused", "received"):
        if status in got:
            return got[status]
    raise ChannelError(f"no live twin of run {run_id!r} answered on {decisions_topic(run_id)} at "
                       f"mqtt://{host}:{port} within {timeout_s:g} s: is 'twin live' running for that run folder?")
