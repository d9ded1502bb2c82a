"""CAP 1.2 alerts: built from a fired rule, validated against the OASIS schema, published on MQTT,
and turned into a ``warning`` decision.

Every alert is validated against ``twin/data/cap/CAP-v1.2.xsd`` (OASIS CAP 1.2, shipped with the
package; see SOURCE.md there) with ``xmlschema`` before it is written: an alert that does not
validate is never written or published (:class:`CapError`).

An alert has one ``info`` block in Vietnamese (``vi-VN``) and one in English (``en-US``), category
``Met`` and ``Safety``, the area's polygon in WGS84 (``"lat,lon"`` pairs, a closed ring) and a
``geocode`` naming the ward(s) (``valueName`` ``ward``) so that a live twin can warn exactly those
wards (:func:`alert_to_decision`). ``Update`` and ``Cancel`` messages carry ``references``
(``sender,identifier,sent`` of the alerts they follow).
"""
from __future__ import annotations

import functools
import queue
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CAP_NS", "XSD_PATH", "CapError", "AlertSpec", "build_alert", "validate_cap", "alert_to_decision",
           "publish_alerts", "AlertListener", "parse_alert", "DEFAULT_TOPIC"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
XSD_PATH = Path(__file__).resolve().parents[1] / "data" / "cap" / "CAP-v1.2.xsd"
DEFAULT_TOPIC = "tamky/alerts/cap"
ET.register_namespace("", CAP_NS)


class CapError(ValueError):
    """A CAP alert that does not validate against the CAP 1.2 schema (the message says where)."""


@functools.lru_cache(maxsize=1)
def _schema():
    import xmlschema

    return xmlschema.XMLSchema(str(XSD_PATH))


def validate_cap(xml: str | bytes, name: str = "alert") -> None:
    """CapError naming ``name`` and the first problem unless ``xml`` is a valid CAP 1.2 alert."""
    import xmlschema

    try:
        _schema().validate(xml.decode("utf-8") if isinstance(xml, bytes) else xml)
    except (xmlschema.XMLSchemaValidationError, ET.ParseError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        path = getattr(exc, "path", None)
        raise CapError(f"{name}: not a valid CAP 1.2 alert ({reason}{f' at {path}' if path else ''})") from None


@dataclass
class AlertSpec:
    """What an alert says (both languages), where and when."""

    identifier: str
    sender: str
    sent: str                       # "YYYY-MM-DDThh:mm:ss+07:00"
    msg_type: str                   # Alert | Update | Cancel
    severity: str
    urgency: str
    certainty: str
    onset: str
    expires: str
    area_desc: str
    polygon: list[tuple[float, float]]   # (lat, lon), closed ring
    wards: list[str] = field(default_factory=list)
    event_en: str = "Flood"
    event_vi: str = "Ngập lụt"
    headline_en: str = ""
    headline_vi: str = ""
    description_en: str = ""
    description_vi: str = ""
    instruction_en: str = ""
    instruction_vi: str = ""
    references: list[str] = field(default_factory=list)   # "sender,identifier,sent"
    parameters: dict[str, str] = field(default_factory=dict)
    status: str = "Actual"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    e = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        e.text = text
    return e


def _polygon_text(ring: list[tuple[float, float]]) -> str:
    pts = list(ring)
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    return " ".join(f"{lat:.5f},{lon:.5f}" for lat, lon in pts)


def build_alert(a: AlertSpec) -> str:
    """The CAP 1.2 XML (UTF-8 text) of ``a``, validated (:class:`CapError` if it does not validate)."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    for tag, val in (("identifier", a.identifier), ("sender", a.sender), ("sent", a.sent), ("status", a.status),
                     ("msgType", a.msg_type), ("source", "Tam Kỳ Twin ensemble forecast"), ("scope", "Public")):
        _sub(root, tag, val)
    if a.references:
        _sub(root, "references", " ".join(a.references))
    for lang, ev, head, desc, instr in (
            ("vi-VN", a.event_vi, a.headline_vi, a.description_vi, a.instruction_vi),
            ("en-US", a.event_en, a.headline_en, a.description_en, a.instruction_en)):
        info = _sub(root, "info")
        _sub(info, "language", lang)
        _sub(info, "category", "Met")
        _sub(info, "category", "Safety")
        _sub(info, "event", ev)
        _sub(info, "responseType", "AllClear" if a.msg_type == "Cancel" else "Prepare")
        _sub(info, "urgency", a.urgency)
        _sub(info, "severity", a.severity)
        _sub(info, "certainty", a.certainty)
        _sub(info, "onset", a.onset)
        _sub(info, "expires", a.expires)
        _sub(info, "senderName", "Tam Kỳ Twin")
        _sub(info, "headline", head)
        _sub(info, "description", desc)
        _sub(info, "instruction", instr)
        for k, v in a.parameters.items():
            p = _sub(info, "parameter")
            _sub(p, "valueName", k)
            _sub(p, "value", v)
        area = _sub(info, "area")
        _sub(area, "areaDesc", a.area_desc)
        _sub(area, "polygon", _polygon_text(a.polygon))
        for w in a.wards:
            g = _sub(area, "geocode")
            _sub(g, "valueName", "ward")
            _sub(g, "value", w)
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
    validate_cap(xml, a.identifier)
    return xml


def parse_alert(alert: str | bytes | Path) -> dict[str, Any]:
    """The fields a reader needs from a CAP alert (XML text, bytes or a file): identifier, sender,
    sent, msgType, references, and per language the headline/severity/urgency/certainty/onset/
    expires, the area description and the ward geocodes."""
    if isinstance(alert, Path) or (isinstance(alert, str) and not alert.lstrip().startswith("<")):
        text = Path(alert).read_text(encoding="utf-8")
    else:
        text = alert.decode("utf-8") if isinstance(alert, bytes) else alert
    validate_cap(text, "alert")
    root = ET.fromstring(text.encode("utf-8"))
    ns = {"c": CAP_NS}

    def t(el, tag):
        e = el.find(f"c:{tag}", ns)
        return e.text if e is not None else None

    out: dict[str, Any] = {k: t(root, k) for k in ("identifier", "sender", "sent", "status", "msgType", "references")}
    out["info"] = {}
    for info in root.findall("c:info", ns):
        lang = t(info, "language") or "en-US"
        area = info.find("c:area", ns)
        wards = [g.find("c:value", ns).text for g in area.findall("c:geocode", ns)  # type: ignore[union-attr]
                 if g.find("c:valueName", ns) is not None and g.find("c:valueName", ns).text == "ward"] if area is not None else []  # type: ignore[union-attr]
        out["info"][lang] = {k: t(info, k) for k in ("event", "urgency", "severity", "certainty", "onset", "expires",
                                                     "headline", "description", "instruction")}
        out["info"][lang]["areaDesc"] = t(area, "areaDesc") if area is not None else None
        out["info"][lang]["polygon"] = t(area, "polygon") if area is not None else None
        out["info"][lang]["wards"] = [w for w in wards if w]
    out["xml"] = text
    return out


def alert_to_decision(alert: str | bytes | Path | dict) -> Any:
    """A ``warning`` decision (:class:`twin.decisions.Warning_`) for a CAP alert: the wards of its
    geocodes (none: the whole city), by cell broadcast, labelled with the English headline.
    A ``Cancel`` is refused (ValueError): a warning that was given cannot be taken back as a
    decision; the cancellation is for the public."""
    from twin.decisions import parse_decision

    a = alert if isinstance(alert, dict) else parse_alert(alert)
    if a.get("msgType") == "Cancel":
        raise ValueError(f"alert {a.get('identifier')}: a cancellation is no warning decision")
    info = a["info"].get("en-US") or next(iter(a["info"].values()))
    wards = info.get("wards") or None
    label = (info.get("headline") or f"CAP alert {a.get('identifier')}")[:200]
    return parse_decision({"type": "warning", "channel": "cell_broadcast", "area": wards, "label": label})


def _broker(url: str) -> tuple[str, int]:
    from urllib.parse import urlparse

    u = urlparse(url if "://" in url else f"mqtt://{url}")
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ValueError(f"--mqtt {url!r}: expected mqtt://HOST[:PORT]")
    return u.hostname, int(u.port or 1883)


def publish_alerts(paths: list[Path], broker: str, topic: str = DEFAULT_TOPIC, timeout_s: float = 10.0) -> int:
    """Publish each alert file (QoS 1) on ``topic`` at ``broker`` (``mqtt://host:port``); returns the
    number published. ValueError naming the broker when it cannot be reached."""
    import paho.mqtt.client as mqtt

    host, port = _broker(broker)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    try:
        c.connect(host, port, keepalive=30)
    except OSError as exc:
        raise ValueError(f"--mqtt {broker}: cannot connect ({exc.strerror or exc})") from None
    c.loop_start()
    try:
        n = 0
        for p in paths:
            info = c.publish(topic, Path(p).read_bytes(), qos=1)
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise ValueError(f"--mqtt {broker}: {Path(p).name} was not acknowledged within {timeout_s:g} s")
            n += 1
        return n
    finally:
        c.disconnect()
        c.loop_stop()


class AlertListener:
    """Subscribes to CAP alerts on MQTT and queues the ``warning`` decisions they become; the live
    twin drains :meth:`pending` between coupling steps (``auto_warn: true``)."""

    def __init__(self, broker: str, topic: str = DEFAULT_TOPIC, client_id: str = "twin-live-alerts"):
        import paho.mqtt.client as mqtt

        self.host, self.port = _broker(broker)
        self.topic = topic
        self.queue: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg):
        try:
            a = parse_alert(msg.payload)
            if a.get("msgType") == "Cancel":
                return
            self.queue.put((a["identifier"], alert_to_decision(a)))
        except (ValueError, KeyError) as exc:
            self.errors.append(str(exc))

    def start(self) -> AlertListener:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def pending(self) -> list[tuple[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
