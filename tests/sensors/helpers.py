"""Helpers the sensors tests and benchmarks/sensors_ingest.py import: a mosquitto broker started and
stopped by PID, the environment a ``twin`` subprocess needs, and a parent-death signal."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(tmp: Path, max_inflight_messages: int | None = 0, port: int | None = None):
    """``max_inflight_messages``: 0 = unlimited unacknowledged messages per MQTT 3.1.1 client
    (MQTT 5 clients announce their own Receive Maximum); None = mosquitto's default (20).
    ``persistence true``: sessions and queued messages survive a broker restart (saved in ``tmp``
    on shutdown; see docs/user-guide/sensors-guarantees.md). ``port``: restart the broker that ran
    in ``tmp`` on that port, with its saved state; without it a fresh broker (old state removed)."""
    if port is None:
        port = free_port()
        (tmp / "mosquitto.db").unlink(missing_ok=True)
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {tmp}/\n"
        "max_queued_messages 200000\n"     # the ingester's queue while it is down
        + ("" if max_inflight_messages is None else f"max_inflight_messages {int(max_inflight_messages)}\n") +
        "log_dest stderr\n"
        "log_type error\n"
        # stay this user: a privilege drop would clear the parent-death signal below
        + (f"user {__import__('pwd').getpwuid(os.getuid()).pw_name}\n")
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {proc.stderr.read().decode()}") from None
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("mosquitto did not start")
    return proc, port


def stop_pid(proc: subprocess.Popen):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    close_pipes(proc)


def close_pipes(proc: subprocess.Popen):
    """Close the pipes of a finished process (left open they are a ResourceWarning, an error in the tests)."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def twin_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the test process dies (Linux prctl PR_SET_PDEATHSIG),
    so an interrupted test run leaves no ingester behind."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass
