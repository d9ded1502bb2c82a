"""Background scenario runs started from the builder: one subprocess per job (``python -m twin run``).

A job runs in its own process group so that cancelling it (SIGINT, which makes ``twin run`` leave a
resumable checkpoint, then SIGTERM, then SIGKILL) touches nothing else. Progress is read from the
runner's progress bar (the last ``NN%`` it printed); the output tail is kept for error messages.
"""
from __future__ import annotations

import collections
import datetime as _dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PCT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


def slug(text: str, maxlen: int = 40) -> str:
    import unicodedata

    s = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()
    return (s or "run")[:maxlen]


@dataclass
class Job:
    id: str
    name: str
    argv: list[str]
    out_dir: Path
    status: str = "starting"            # starting, running, done, failed, cancelled
    progress: float | None = None       # 0..100
    returncode: int | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=40))
    proc: subprocess.Popen | None = None
    cancel_requested: bool = False

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "status": self.status, "progress": self.progress,
                "returncode": self.returncode, "out_dir": str(self.out_dir),
                "elapsed_s": (self.ended or time.time()) - self.started, "tail": "\n".join(self.tail)}


class JobManager:
    def __init__(self, runs_dir: str | Path, runner: list[str] | None = None):
        self.runs_dir = Path(runs_dir)
        self.runner = list(runner) if runner else [sys.executable, "-m", "twin", "run"]
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def new_id(self, name: str) -> str:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{slug(name)}"
        k, cand = 1, base
        while (self.runs_dir / cand).exists() or cand in self.jobs:
            k += 1
            cand = f"{base}-{k}"
        return cand

    def submit(self, scenario_path: str | Path, name: str, overrides: list[str] | None = None,
               job_id: str | None = None) -> Job:
        job_id = job_id or self.new_id(name)
        out = self.runs_dir / job_id
        argv = self.runner + [str(scenario_path), "--out", str(out)]
        for o in overrides or []:
            argv += ["--set", o]
        job = Job(id=job_id, name=name, argv=argv, out_dir=out)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env["TQDM_MININTERVAL"] = "0.5"
        job.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=str(REPO), start_new_session=True)
        job.status = "running"
        with self._lock:
            self.jobs[job_id] = job
        threading.Thread(target=self._pump, args=(job,), daemon=True, name=f"job-{job_id}").start()
        return job

    def _pump(self, job: Job) -> None:
        assert job.proc is not None and job.proc.stdout is not None
        buf = b""
        while True:
            chunk = job.proc.stdout.read1(4096) if hasattr(job.proc.stdout, "read1") else job.proc.stdout.read(4096)
            if not chunk:
                break
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for p in parts:
                self._line(job, p.decode("utf-8", "replace"))
            if buf:
                m = _PCT.findall(buf.decode("utf-8", "replace"))
                if m:
                    job.progress = min(100.0, float(m[-1]))
        if buf:
            self._line(job, buf.decode("utf-8", "replace"))
        job.proc.stdout.close()      # at EOF: one descriptor per job would leak otherwise
        rc = job.proc.wait()
        job.returncode = rc
        job.ended = time.time()
        if job.cancel_requested:
            job.status = "cancelled"
        elif rc == 0:
            job.status = "done"
            job.progress = 100.0
        else:
            job.status = "failed"

    def _line(self, job: Job, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        m = _PCT.findall(line)
        if m:
            job.progress = min(100.0, float(m[-1]))
            if job.tail and _PCT.search(job.tail[-1]):
                job.tail[-1] = line  # progress bars overwrite themselves
                return
        job.tail.append(line)

    def get(self, job_id: str | None) -> Job | None:
        return self.jobs.get(job_id) if job_id else None

    def cancel(self, job_id: str, grace_s: float = 5.0) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.proc is None or job.proc.poll() is not None:
            return False
        job.cancel_requested = True

        def stop():
            pgid = job.proc.pid  # own session: the group id is the child's pid
            for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    return
                try:
                    job.proc.wait(timeout=wait)
                    return
                except subprocess.TimeoutExpired:
                    continue

        threading.Thread(target=stop, daemon=True).start()
        return True

    def shutdown(self) -> None:
        for job in list(self.jobs.values()):
            if job.proc is not None and job.proc.poll() is None:
                self.cancel(job.id, grace_s=1.0)
