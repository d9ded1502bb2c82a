"""The dashboard server confines what a client sends (issue 14, items 14-16).

Most tests talk plain HTTP to a real ``twin serve`` process (waitress) on 127.0.0.1 and a free
port, over a temporary runs folder holding a small fixture run, symlinks out of it and a secret
file outside: run and base-scenario ids outside the server-side lists get one generic answer,
nothing outside the allowed folders is read or quoted, bodies over the limit get 413, a foreign
Host header gets 400 and Run needs the access token when the server has one.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twin.dashboard import scenario_form as sf
from twin.dashboard.app import create_app, host_allowed, is_loopback
from twin.dashboard.pages import builder
from twin.dashboard.runs import UNKNOWN_RUN, RunError, list_runs, resolve_run, run_ids

from . import fixture_run as fx
from .helpers import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2"
SECRET_YAML = 'user: admin\npassword: "hunter2\n'        # not valid YAML: the parse error would quote it
OUTSIDE_RUN_NAME = "OUTSIDE-RUN-secret-name"


def make_tree(root: Path) -> dict[str, Path]:
    """runs/ with a good run, a symlink to a run outside, a run whose manifest links outside;
    scenarios/ with a base and a symlink to the secret; outside/ with the secret and a run."""
    runs, scen, out = root / "runs", root / "scenarios", root / "outside"
    for d in (runs, scen, out):
        d.mkdir(parents=True)
    fx.write_run(runs / "fixture-a", n_times=3, name="good run", city="fixture")
    fx.write_run(out / "run-x", n_times=3, name=OUTSIDE_RUN_NAME, city="fixture")
    (out / "secret.yaml").write_text(SECRET_YAML, encoding="utf-8")
    (out / "secret.json").write_text(json.dumps({"name": f"manifest {SECRET}"}), encoding="utf-8")
    (out / "rain.csv").write_text(f"t_s,rain_mm_per_h\n0,{SECRET}\n", encoding="utf-8")
    (runs / "linked").symlink_to(out / "run-x", target_is_directory=True)
    inner = runs / "inner-link"
    inner.mkdir()
    (inner / "manifest.json").symlink_to(out / "secret.json")
    (scen / "fixture_base.yaml").write_text(fx.ENGINE_SCENARIO.format(
        name="fixture_base", description="base", rp=10, duration="1h", seed=1), encoding="utf-8")
    (scen / "leak.yaml").symlink_to(out / "secret.yaml")
    return {"runs": runs, "scenarios": scen, "outside": out}


# ---------------------------------------------------------------------------------------------
# in-process: the resolvers, the host check, the limits
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("confined"))


def test_run_ids_list_only_confined_run_folders(tree):
    assert run_ids(tree["runs"]) == ["fixture-a"]
    assert [r["id"] for r in list_runs(tree["runs"])] == ["fixture-a"]   # the symlinks are not offered
    assert resolve_run(tree["runs"], "fixture-a") == (tree["runs"] / "fixture-a").resolve()
    out = tree["outside"]
    for bad in ["linked", "inner-link", "../outside/run-x", str(out / "run-x"), "/etc/passwd", "/etc",
                "/no/such/dir", "../../etc/passwd", "..", ".", "", "fixture-a/", "fixture-a/../linked", None, 3,
                ["fixture-a"], {"id": "fixture-a"}]:
        with pytest.raises(RunError) as exc:
            resolve_run(tree["runs"], bad)
        assert str(exc.value) == UNKNOWN_RUN, bad


def test_base_scenarios_are_ids_confined_to_the_folder(tree):
    scen = tree["scenarios"]
    assert sf.base_scenarios(scen) == [{"label": "fixture_base.yaml", "value": "fixture_base"}]
    assert sf.resolve_base(scen, "fixture_base") == (scen / "fixture_base.yaml").resolve()
    for bad in ["leak", str(tree["outside"] / "secret.yaml"), "../outside/secret", "/etc/passwd", None, 1]:
        with pytest.raises(ValueError, match="^Unknown base scenario"):
            sf.resolve_base(scen, bad)


def test_confine_refuses_files_outside_and_city_paths(tree):
    scen, out = tree["scenarios"], tree["outside"]
    data = {"name": "x", "city": "../outside", "extends": str(out / "secret.yaml"),
            "flood": {"rain": {"kind": "file", "file": str(out / "rain.csv")}},
            "sensors": {"store": "/etc/passwd"}}
    _, errs = sf.confine(data, scen)
    assert sorted(e.split(":")[0] for e in errs) == ["city", "extends", "flood.rain.file", "sensors.store"]
    assert all(str(out) not in e and "passwd" not in e for e in errs)   # the key is named, never the path
    # a missing file and an existing one outside get the same words
    _, e1 = sf.confine({"extends": "/no/such.yaml"}, scen)
    _, e2 = sf.confine({"extends": str(out / "secret.yaml")}, scen)
    assert e1 == e2
    ok, errs = sf.confine({"extends": "fixture_base.yaml", "city": "fixture"}, scen)
    assert errs == [] and ok["extends"] == str((scen / "fixture_base.yaml").resolve())


def test_host_check_and_loopback():
    allowed = ["127.0.0.1", "localhost", "::1", "twin.lan"]
    for ok in ["127.0.0.1", "127.0.0.1:8050", "LOCALHOST:1", "[::1]:8050", "twin.lan", "twin.lan.:80"]:
        assert host_allowed(ok, allowed), ok
    for bad in [None, "", "evil.example", "evil.example:8050", "127.0.0.1.evil.example", "0.0.0.0:8050",
                "localhost@evil", "twin.lan:80:80", "[::2]:80"]:
        assert not host_allowed(bad, allowed), bad
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("twin.lan")


def test_upload_over_the_limit_is_refused_before_parsing():
    big = b"a: " + b"x" * 5000 + b"\n"
    url = "data:application/x-yaml;base64," + base64.b64encode(big).decode()
    t0 = time.perf_counter()
    data, err = builder.parse_upload(url, "big.yaml", max_bytes=1000)
    assert data is None and "the limit is 1,000 bytes" in err and time.perf_counter() - t0 < 0.5
    alias = "data:;base64," + base64.b64encode(b"a: &a [1, 2]\nb: [*a, *a]\n").decode()
    assert "anchors and aliases" in builder.parse_upload(alias, "bomb.yaml")[1]


def test_token_is_needed_to_run_through_the_real_request_path(tree):
    """create_app(token=...) behind Flask's test client: Run without the token is refused."""
    app = create_app(tree["runs"], scenarios_dir=tree["scenarios"], token="s3cret-token")
    client = app.server.test_client()
    cb = find_callback(json.loads(client.get("/_dash-dependencies").data), "b-msg.children", "b-run.n_clicks")
    body = callback_body(cb, {"b-run.n_clicks": 1, "b-base.value": "fixture_base", "b-name.value": ""},
                         changed="b-run.n_clicks")
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200 and "needs the access token" in r.get_data(as_text=True)
    body_tok = callback_body(cb, {"b-run.n_clicks": 1, "b-base.value": "fixture_base", "b-name.value": "",
                                  "b-token.value": "s3cret-token"}, changed="b-run.n_clicks")
    r = client.post("/_dash-update-component", json=body_tok)
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and "needs the access token" not in text and "Give the scenario a name" in text
    r = client.post("/_dash-update-component", json=body, headers={"X-Twin-Token": "s3cret-token"})
    assert "needs the access token" not in r.get_data(as_text=True)
    assert app._twin_ctx.jobs.jobs == {}          # nothing was started (the form was invalid)


def test_serve_binds_loopback_by_default_and_needs_a_token_elsewhere(monkeypatch, capsys, tree):
    """``twin serve`` wiring: waitress, the host list, and a token printed for a non-loopback bind
    (waitress.serve is replaced: nothing listens on the network in this test)."""
    import waitress

    from twin.cli import main

    seen = {}

    class FakeServer:
        def run(self):
            seen["ran"] = True

    def fake_create_server(app, **kw):
        seen.update(kw, app=app)
        return FakeServer()

    monkeypatch.setattr(waitress, "create_server", fake_create_server)
    assert main(["serve", "--runs", str(tree["runs"]), "--scenarios", str(tree["scenarios"]), "--port", "8123"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["max_request_body_size"] == 4_000_000
    assert seen["ran"]
    assert seen["app"].config["MAX_CONTENT_LENGTH"] == 2_000_000
    assert seen["app"].wsgi_app.allowed == {"127.0.0.1", "localhost", "::1"}
    assert "Access token" not in capsys.readouterr().out
    assert main(["serve", "--runs", str(tree["runs"]), "--host", "0.0.0.0", "--allow-host", "twin.lan"]) == 0
    out = capsys.readouterr().out
    token = out.split("X-Twin-Token): ")[1].split()[0]
    assert seen["host"] == "0.0.0.0" and len(token) >= 20
    assert seen["app"].wsgi_app.allowed == {"127.0.0.1", "localhost", "::1", "twin.lan"}   # not 0.0.0.0
    # bad values: exit 2 with one line, no traceback
    for argv, words in ((["--max-upload-kb", "5000"], "--max-upload-kb"), (["--host", "0.0.0.0", "--debug"], "--debug"),
                        (["--host", "a/b"], "--host"), (["--port", "0"], "--port")):
        assert main(["serve", "--runs", str(tree["runs"]), *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# a real server process
# ---------------------------------------------------------------------------------------------
class Served:
    def __init__(self, root: Path, tree: dict[str, Path], *extra: str):
        self.port = free_port()
        self.log = root / f"serve-{self.port}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log_fh = self.log.open("w")      # closed in stop(): the child writes to it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twin", "serve", "--runs", str(tree["runs"]), "--scenarios", str(tree["scenarios"]),
             "--port", str(self.port), *extra],
            stdout=self._log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(root))
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                self._log_fh.close()
                raise RuntimeError(f"twin serve exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if self.request("GET", "/")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"twin serve did not answer: {self.log.read_text()}")
            time.sleep(0.5)
        self.deps = json.loads(self.request("GET", "/_dash-dependencies")[1])

    def request(self, method, path, body: bytes | None = None, headers: dict | None = None, host: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.putrequest(method, path, skip_host=True)
            conn.putheader("Host", host or f"127.0.0.1:{self.port}")
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None and "Content-Length" not in (headers or {}):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            if body:
                conn.send(body)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def call(self, output: str, values: dict, changed: str, headers: dict | None = None, host: str | None = None):
        body = json.dumps(callback_body(find_callback(self.deps, output, changed), values, changed)).encode()
        return self.request("POST", "/_dash-update-component", body,
                            {"Content-Type": "application/json", **(headers or {})}, host)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            self._log_fh.close()


def find_callback(deps: list[dict], output: str, changed: str) -> dict:
    """The callback that writes ``output`` (``id.prop``) when input ``changed`` changes."""
    for cb in deps:
        outs = [o.split("@")[0] for o in cb["output"].strip(".").split("...")]
        if output in outs and changed in [f"{i['id']}.{i['property']}" for i in cb["inputs"]]:
            return cb
    raise KeyError((output, changed))


#: the builder's field-error boxes, as the browser lists them for the ALL pattern
FIELD_ERRORS = [{"type": "field-error", "field": f} for f in builder.FIELD_IDS + ["b-base-interventions"]]


def callback_body(cb: dict, values: dict, changed: str, matches: list[dict] = FIELD_ERRORS) -> dict:
    """The JSON the browser posts to /_dash-update-component for ``cb`` (missing values: None;
    a pattern-matching ALL dependency matches the components ``matches``)."""
    def spec(dep):
        if dep["id"].startswith("{"):
            return [{"id": m, "property": dep["property"], "value": m if dep["property"] == "id" else None}
                    for m in matches]
        return {"id": dep["id"], "property": dep["property"], "value": values.get(f"{dep['id']}.{dep['property']}")}

    outs = []
    for o in cb["output"].strip(".").split("..."):
        oid, prop = o.rsplit(".", 1)
        prop = prop.split("@")[0]
        outs.append([{"id": m, "property": prop} for m in matches] if oid.startswith("{") else {"id": oid, "property": prop})
    return {"output": cb["output"], "outputs": outs if cb["output"].startswith("..") else outs[0],
            "inputs": [spec(d) for d in cb["inputs"]], "state": [spec(d) for d in cb["state"]],
            "changedPropIds": [changed]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    tree = make_tree(root)
    srv = Served(root, tree, "--max-request-mb", "0.5", "--max-upload-kb", "100", "--require-token")
    srv.tree = tree
    srv.token = srv.log.read_text().split("X-Twin-Token): ")[1].split()[0]
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0, srv.log.read_text()[-2000:]   # SIGTERM: a clean exit


TRAVERSALS = ["../../etc/passwd", "/etc/passwd", "/etc", "/no/such/dir", "../outside/run-x", "linked", "inner-link",
              "..", "fixture-a/../linked"]


def test_traversal_run_ids_get_one_generic_answer(served):
    out = served.tree["outside"]
    answers = set()
    for rid in TRAVERSALS + [str(out / "run-x")]:
        status, text = served.call("map-msg.children", {"map-run.value": rid}, "map-run.value")
        assert status == 200, (rid, status, text)
        assert UNKNOWN_RUN in text and SECRET not in text and OUTSIDE_RUN_NAME not in text, rid
        answers.add(text)
    assert len(answers) == 1          # existing and missing paths cannot be told apart
    status, good = served.call("map-msg.children", {"map-run.value": "fixture-a"}, "map-run.value")
    assert status == 200 and UNKNOWN_RUN not in good and "fixture-a" in good      # a listed id still works
    for output, inputs in (("cmp-msg.children", ("cmp-a.value", "cmp-b.value")), ("em-msg.children", ("em-run.value",))):
        for rid in ("../../etc/passwd", "linked"):
            status, text = served.call(output, {k: rid for k in inputs}, inputs[0])
            assert status == 200 and UNKNOWN_RUN in text and OUTSIDE_RUN_NAME not in text, (output, rid)
    # the run list the client polls offers ids only, and not the symlinks
    status, text = served.call("map-run.options", {"map-runs-poll.n_intervals": 1}, "map-runs-poll.n_intervals")
    opts = json.loads(text)["response"]["map-run"]["options"]
    assert [o["value"] for o in opts] == ["fixture-a"] and str(served.tree["runs"]) not in text


def test_builder_never_reads_a_base_outside_the_scenarios_folder(served):
    out = served.tree["outside"]
    for base in [str(out / "secret.yaml"), "../outside/secret", "../outside/secret.yaml", "leak", "/etc/passwd"]:
        status, text = served.call("b-msg.children", {"b-validate.n_clicks": 1, "b-base.value": base, "b-name.value": "x",
                                                      "b-duration.value": 1, "b-event.value": "design_storm",
                                                      "b-return-period.value": 10}, "b-validate.n_clicks")
        assert status == 200 and SECRET not in text and "Unknown base scenario" in text, (base, text)
        status, text = served.call("b-base-interventions.options", {"b-base.value": base}, "b-base.value")
        assert status == 200 and SECRET not in text and json.loads(text)["response"]["b-base-interventions"]["options"] == []
    status, text = served.call("b-msg.children", {"b-validate.n_clicks": 1, "b-base.value": "fixture_base",
                                                  "b-name.value": "ok", "b-duration.value": 1, "b-event.value": "design_storm",
                                                  "b-return-period.value": 10}, "b-validate.n_clicks")
    assert status == 200 and "The scenario is valid." in text


def _upload(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "data:application/x-yaml;base64," + base64.b64encode(raw).decode()


def test_uploads_cannot_name_files_outside(served):
    out = served.tree["outside"]
    base = (served.tree["scenarios"] / "fixture_base.yaml").read_text()
    cases = [f"extends: {out / 'secret.yaml'}\nname: a\n",
             "extends: ../outside/secret.yaml\nname: a\n",
             base.replace("rain: {kind: design_storm, return_period_years: 10, duration: 1h}",
                          f"rain: {{kind: file, file: {out / 'rain.csv'}}}"),
             base.replace("city: fixture", f"city: {out}")]
    for up in cases:
        status, text = served.call("b-upload-msg.children", {"b-upload.contents": _upload(up), "b-upload.filename": "u.yaml"},
                                   "b-upload.contents")
        assert status == 200 and SECRET not in text and "refused" in text and str(out) not in text, (up, text)
    # the same data sent straight as the uploaded store (skipping the upload callback) is refused too
    # ("b-source.value": the upload is used only when the page's "Run starts" selects it, issue 15)
    status, text = served.call("b-msg.children", {"b-validate.n_clicks": 1, "b-source.value": "upload", "b-uploaded.data": {
        "name": "u.yaml", "data": {"extends": str(out / "secret.yaml"), "name": "a"}}}, "b-validate.n_clicks")
    assert status == 200 and SECRET not in text and "refused" in text


def test_upload_size_and_message_limits(served):
    status, text = served.call("b-upload-msg.children", {"b-upload.contents": _upload("a: " + "x" * 150_000),
                                                         "b-upload.filename": "big.yaml"}, "b-upload.contents")
    assert status == 200 and "the limit is 100,000 bytes" in text
    # a long bad value: the schema's message would quote it whole; the page shows at most 500 characters
    base = (served.tree["scenarios"] / "fixture_base.yaml").read_text()
    up = base.replace("name: fixture_base", "name: " + "bad name " * 8000)
    status, text = served.call("b-upload-msg.children", {"b-upload.contents": _upload(up), "b-upload.filename": "long.yaml"},
                               "b-upload.contents")
    msg = json.loads(text)["response"]["b-upload-msg"]["children"]["props"]["children"]
    assert status == 200 and "long.yaml" in msg and len(msg) <= 500


def test_bodies_over_the_limit_get_413(served):
    body = b'{"output": "' + b"x" * 600_000 + b'"}'
    assert served.request("POST", "/_dash-update-component", body, {"Content-Type": "application/json"})[0] == 413
    # announced but not sent: refused from the header alone
    status, _ = served.request("POST", "/_dash-update-component", b"",
                               {"Content-Type": "application/json", "Content-Length": str(50_000_000)})
    assert status == 413


def test_foreign_host_header_gets_400(served):
    for host in ("evil.example", f"evil.example:{served.port}", f"0.0.0.0:{served.port}", "127.0.0.1.evil.example"):
        status, text = served.request("GET", "/", host=host)
        assert status == 400 and "Host" in text, host
        status, _ = served.call("b-msg.children", {"b-run.n_clicks": 1}, "b-run.n_clicks", host=host)
        assert status == 400
    assert served.request("GET", "/", host=f"localhost:{served.port}")[0] == 200


def test_run_needs_the_printed_token(served):
    form = {"b-run.n_clicks": 1, "b-base.value": "fixture_base", "b-name.value": ""}   # invalid: nothing starts
    status, text = served.call("b-msg.children", form, "b-run.n_clicks")
    assert status == 200 and "needs the access token" in text
    status, text = served.call("b-msg.children", form, "b-run.n_clicks", headers={"X-Twin-Token": "wrong"})
    assert "needs the access token" in text
    status, text = served.call("b-msg.children", {**form, "b-token.value": served.token}, "b-run.n_clicks")
    assert status == 200 and "needs the access token" not in text and "Give the scenario a name" in text
    status, text = served.call("b-status.children", {"b-cancel.n_clicks": 1, "b-job.data": "some-job"}, "b-cancel.n_clicks")
    assert "needs the access token" in text
    assert not any(p.name != ".jobs" and p.name not in ("fixture-a", "linked", "inner-link")
                   for p in served.tree["runs"].iterdir())
