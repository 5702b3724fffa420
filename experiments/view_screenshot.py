"""A headless-Chromium screenshot of ``python -m lasr.view`` (Debian's ``chromium``; WebGL on
SwiftShader, no GPU needed).

    uv run python experiments/view_screenshot.py RUN_FOLDER docs/viewer.png [--frame 12]
        [--colours fitted|skinning|gray] [--rest] [--size 1280x800] [--wait 8]

Starts the viewer of RUN_FOLDER on a free port of 127.0.0.1 and shows the chosen frame;
starts Chromium headless with its DevTools port on 127.0.0.1, opens the viewer's page, waits
``--wait`` seconds of real time (the textures, such as the input frame in the camera's
frustum, load asynchronously, which Chromium's ``--screenshot`` with a virtual-time budget
does not wait for), closes the page's notifications (viser warns that WebGL runs in software),
captures the page as PNG through the DevTools protocol, and stops both.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def devtools_screenshot(chromium: str, url: str, out: Path, width: int, height: int, wait: float) -> None:
    """Open ``url`` in headless Chromium, wait ``wait`` s, write a PNG of the page to ``out``."""
    import urllib.request

    from websockets.sync.client import connect

    port = free_port()
    profile = out.parent / f".chromium-profile-{port}"
    cmd = [chromium, "--headless=new", "--no-sandbox", "--hide-scrollbars", "--use-gl=angle",
           "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
           f"--window-size={width},{height}", f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
           f"--user-data-dir={profile}", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # the DevTools endpoint comes up within seconds
            try:
                pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2).read())
                ws = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
                break
            except (OSError, StopIteration, ValueError):
                time.sleep(0.2)
        else:
            raise SystemExit("chromium's DevTools endpoint did not come up")
        with connect(ws, max_size=None, open_timeout=20) as conn:
            ids = iter(range(1, 1000))

            def call(method, **params):
                i = next(ids)
                conn.send(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    msg = json.loads(conn.recv(timeout=120))
                    if msg.get("id") == i:
                        return msg.get("result", {})

            call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            call("Page.enable")
            call("Page.navigate", url=url)
            time.sleep(wait)
            # close the notifications (SwiftShader's "software WebGL" warning) before the capture
            call("Runtime.evaluate", expression="document.querySelectorAll("
                 "'.mantine-Notification-closeButton, .mantine-Notification-root button').forEach(b => b.click())")
            time.sleep(1.0)
            shot = call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--frame", type=int, default=0)
    ap.add_argument("--colours", default="fitted")
    ap.add_argument("--rest", action="store_true")
    ap.add_argument("--no-skeleton", action="store_true")
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--wait", type=float, default=8.0, help="seconds the page loads before the capture")
    ap.add_argument("--video", default=None)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("no chromium on PATH: apt-get install -y chromium")

    from lasr.view import serve

    viewer = serve(args.run, port=free_port(), video=args.video)
    try:
        g = viewer.gui
        if args.colours in g["colours"].options:
            g["colours"].value = args.colours
        g["rest"].value = bool(args.rest)
        g["skeleton"].value = not args.no_skeleton and viewer.data.num_bones > 0
        viewer.show(args.frame)
        out = Path(args.out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        w, h = (int(x) for x in args.size.split("x"))
        t0 = time.time()
        devtools_screenshot(chromium, viewer.url, out, w, h, args.wait)
        print(f"{out}: {out.stat().st_size} bytes, {w}x{h}, in {time.time() - t0:.1f}s")
    finally:
        viewer.stop()


if __name__ == "__main__":
    main()
