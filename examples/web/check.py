#!/usr/bin/env python3
"""Headless check of the browser demo: serves examples/web/, opens it in Chromium (WebGPU on
SwiftShader) through chromedriver, classifies MNIST test digits on WebGPU, then digits drawn
with pointer events, then the test digits on wgml's CPU backend compiled to wasm; checks the
page's result element, prints the time per inference and saves a screenshot.

    examples/web/build.sh && python3 examples/web/check.py [--screenshot PATH]

Needs Debian's `chromium` and `chromium-driver`; uses only Python's standard library.
"""

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--use-webgpu-adapter=swiftshader",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=900,760",
]
# The first ten digits of MNIST's test set; a trained CNN gets all of them right.
DIGITS = range(10)
REPEATS = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def serve(directory):
    """Serves `directory` on a free port in a background thread; returns the base URL."""
    Quiet.extensions_map[".wasm"] = "application/wasm"
    handler = functools.partial(Quiet, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class WebDriver:
    """The few W3C WebDriver calls this check needs, over chromedriver's HTTP endpoint."""

    def __init__(self, chromedriver):
        port = free_port()
        self.profile = tempfile.mkdtemp(prefix="wgml-web-")
        self.proc = subprocess.Popen(
            [chromedriver, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                self.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": shutil.which("chromium") or "/usr/bin/chromium",
                "args": CHROME_ARGS + [f"--user-data-dir={self.profile}"],
            },
        }
        session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = f"/session/{session['sessionId']}"
        self.call("POST", f"{self.session}/timeouts", {"script": 600_000, "pageLoad": 120_000})

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=900) as r:
                return json.load(r)["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read().decode()[:2000]}") from None

    def run(self, script, *args):
        """Runs an async `script`, whose last argument is the callback for its result."""
        return self.call("POST", f"{self.session}/execute/async", {"script": script, "args": list(args)})

    def close(self):
        try:
            self.call("DELETE", self.session)
        finally:
            self.proc.terminate()
            shutil.rmtree(self.profile, ignore_errors=True)


# Resolves the callback with the promise's value, or with {error} if it rejects.
AWAIT = """
const done = arguments[arguments.length - 1];
(%s).then(done, (e) => done({error: String(e && e.message || e)}));
"""


def classify_all(wd, device):
    """Classifies DIGITS on `device` ('gpu' or 'cpu'), REPEATS times each; checks the page."""
    r = wd.run(AWAIT % "window.demo.useDevice(arguments[0])", device)
    if r and "error" in r:
        sys.exit(f"FAIL: switching the demo to {device}: {r['error']}")
    times, wrong, name = [], [], None
    for i in DIGITS:
        r = wd.run(AWAIT % "window.demo.classifySample(arguments[0], arguments[1])", i, REPEATS)
        if "error" in r:
            sys.exit(f"FAIL: classifying test digit {i} on {device}: {r['error']}")
        page = wd.run(
            AWAIT
            % "Promise.resolve((() => { const e = document.getElementById('result');"
            " return {state: e.dataset.state, prediction: e.dataset.prediction, text: e.textContent}; })())"
        )
        if page["state"] != "done" or page["prediction"] != str(r["prediction"]):
            sys.exit(f"FAIL: the result element shows {page} after predicting {r}")
        if r["prediction"] != r["label"]:
            wrong.append((i, r["label"], r["prediction"]))
        times.append(r["ms"])
        name = r["device"]
    times.sort()
    median = times[len(times) // 2]
    print(f"{device}: {name}: {len(DIGITS) - len(wrong)}/{len(DIGITS)} test digits right; "
          f"{median:.1f} ms per inference (median over digits of each digit's median of "
          f"{REPEATS - 1} runs after the first), result element: {page['text']!r}")
    if wrong:
        sys.exit(f"FAIL: wrong predictions (index, label, predicted): {wrong}")
    return median


# Pointer strokes on the 280×280 pad, as a user would draw them: a "1" and a "7".
DRAWN = {
    1: [[(140, 40), (142, 120), (144, 240)]],
    7: [[(70, 60), (150, 58), (215, 60), (180, 140), (150, 200), (130, 250)]],
}
DRAW = """
const pad = document.getElementById('pad');
document.getElementById('clear').click();
const r = pad.getBoundingClientRect();
const ev = (type, [x, y]) => (type === 'pointerup' ? window : pad).dispatchEvent(new PointerEvent(
    type, {clientX: r.left + x, clientY: r.top + y, bubbles: true, pointerId: 1, isPrimary: true}));
for (const stroke of arguments[0]) {
  ev('pointerdown', stroke[0]);
  for (const p of stroke.slice(1)) ev('pointermove', p);
  ev('pointerup', stroke[stroke.length - 1]);
}
const done = arguments[arguments.length - 1];
const result = document.getElementById('result');
const poll = () => result.dataset.state === 'done' && result.dataset.stamp !== window.lastStamp
  ? done({prediction: Number(result.dataset.prediction), text: result.textContent})
  : setTimeout(poll, 20);
window.lastStamp = result.dataset.stamp;
poll();
"""


def check_drawings(wd):
    """Draws each digit of DRAWN with pointer events and checks the page classifies it."""
    for digit, strokes in DRAWN.items():
        r = wd.run(DRAW, strokes)
        print(f"drawn {digit}: classified as {r['prediction']} ({r['text']})")
        if r["prediction"] != digit:
            sys.exit(f"FAIL: a drawn {digit} was classified as {r['prediction']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--screenshot", default=os.path.join(HERE, "..", "..", "target", "web-demo.png"))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(HERE, "pkg", "web.js")):
        sys.exit("FAIL: examples/web/pkg/web.js is missing: run examples/web/build.sh first")
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    url = serve(HERE) + "/index.html"
    wd = WebDriver(chromedriver)
    try:
        wd.call("POST", f"{wd.session}/url", {"url": url})
        r = wd.run(AWAIT % "window.demo.ready.then(() => ({adapter: document.getElementById('adapter').textContent}))")
        if "error" in r:
            sys.exit(f"FAIL: the demo did not load: {r['error']}")
        print(f"adapter: {r['adapter']}")
        gpu_ms = classify_all(wd, "gpu")
        check_drawings(wd)
        png = base64.b64decode(wd.call("GET", f"{wd.session}/screenshot"))
        cpu_ms = classify_all(wd, "cpu")
    finally:
        wd.close()
    if not png.startswith(b"\x89PNG") or len(png) < 10_000:
        sys.exit(f"FAIL: the screenshot is not a plausible PNG ({len(png)} bytes)")
    os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
    with open(args.screenshot, "wb") as f:
        f.write(png)
    print(f"screenshot (a drawn 7 on WebGPU): {os.path.abspath(args.screenshot)}")
    print(f"ok: WebGPU {gpu_ms:.1f} ms, wasm CPU backend {cpu_ms:.1f} ms per inference")


if __name__ == "__main__":
    main()
