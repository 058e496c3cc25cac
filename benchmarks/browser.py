"""Processed FPS and added latency of the live page in headless Chromium, 1 and 4 sessions.

Chromium's fake camera plays a 640×480 clip of dataset test images; each session is a tab
with its own WebRTC connection to one app process (one shared recognizer). For every session
the page's own readout is sampled: processed FPS = frames counted over the measuring window,
added latency = time a frame spends in the app's callback (decode to BGR, recognize, draw),
mean and p95 over the page's 2 s window. VP8 encode/decode and the network are not included.
Browser and app share this machine's CPU, so the benchmark also reports the cores each used
over the window and the app's CPU time per processed frame: what a server that does not host
the browsers (a deployment) spends per frame, all of it (WebRTC, VP8 both ways, recognition).

    .venv/bin/python benchmarks/browser.py                       # trains a smoke model first
    .venv/bin/python benchmarks/browser.py --weights best.pt --onnx model.onnx
    .venv/bin/python benchmarks/browser.py --video-width 320   # ask the browser for 320×240
    .venv/bin/python benchmarks/browser.py --no-recognition    # the same, nothing recognized
    .venv/bin/python benchmarks/browser.py --tracking-uri sqlite:///$HOME/.fingerspell/mlflow.db

Writes ``benchmarks/results/browser.json``. Goal: >= 25 FPS for one session, >= 15 each for 4.
``--no-recognition`` serves ``benchmarks/ceiling_page.py`` (the app's webcam widget and frame
callback with a recognizer that finds nothing) and writes ``browser-ceiling.json``: the FPS
that WebRTC, VP8 both ways and Chromium leave on this machine for any recognizer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, dataset_path, print_table, write_results

sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "e2e")]
import cv2  # noqa: E402
from chromium import (  # noqa: E402
    camera_frame,
    read_stats,
    start_chromium,
    start_stream,
    write_y4m,
)
from support.model_store import register_model  # noqa: E402
from support.servers import BIN, free_port, start_app, start_server, stop, wait_http  # noqa: E402

GOALS = {1: 25.0, 4: 15.0}


def smoke_model(dataset: Path, work: Path) -> tuple[Path, Path]:
    """Weights and ONNX of a briefly trained YOLO11n (speed does not depend on quality)."""
    from inference import smoke_weights

    from tasks.inference.export import export_onnx

    weights = smoke_weights(dataset, work)
    return weights, export_onnx(weights, 320, work / "export")


def make_clip(dataset: Path, path: Path, images: int = 6, hold: int = 30) -> Path:
    """A 640×480 y4m clip: ``images`` test images of different letters, ``hold`` frames each."""
    frames, letters = [], set()
    for image in sorted((dataset / "test" / "images").iterdir()):
        if image.name[0] not in letters:
            letters.add(image.name[0])
            frames += [camera_frame(cv2.imread(str(image)))] * hold
        if len(letters) == images:
            break
    return write_y4m(frames, path)


def cpu_seconds(pid: int, children_only: bool = False) -> float:
    """User + system CPU seconds used so far by process ``pid`` and its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = root.children(recursive=True) + ([] if children_only else [root])
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a helper process that just ended
            continue
        total += times.user + times.system
    return total


def measure(
    url: str,
    clip: Path,
    sessions: int,
    seconds: float,
    app_pid: int,
    screenshot: Path | None = None,
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Open ``sessions`` tabs streaming the clip; sample each page's readout for ``seconds``.

    ``screenshot``: save the first tab's page there at the end of the window.

    Returns:
        One row per session, and the cores the app and the browser used over the window
        (browser and app share this machine's CPU; a deployed app does not host browsers).
    """
    driver = start_chromium(clip)
    browser_pid = driver.service.process.pid
    try:
        tabs = []
        for index in range(sessions):
            if index:
                driver.switch_to.new_window("tab")
            start_stream(driver, url, first_frames=5, timeout=120, attempts=3)
            tabs.append(driver.current_window_handle)
            print(f"  session {index + 1}/{sessions} streaming", flush=True)
        time.sleep(5)  # let bandwidth estimation and every session settle
        start: dict[str, tuple[float, int, int]] = {}
        latencies: dict[str, list[tuple[float, float]]] = {tab: [] for tab in tabs}
        for tab in tabs:
            driver.switch_to.window(tab)
            first = read_stats(driver)
            start[tab] = (time.monotonic(), first.frames, first.video_frames)
        cpu_start = (time.monotonic(), cpu_seconds(app_pid), cpu_seconds(browser_pid, True))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for tab in tabs:
                driver.switch_to.window(tab)
                stats = read_stats(driver)
                latencies[tab].append((stats.latency_ms, stats.latency_p95_ms))
            time.sleep(1.0)
        window = time.monotonic() - cpu_start[0]
        cpu = {
            "app_cores": (cpu_seconds(app_pid) - cpu_start[1]) / window,
            "browser_cores": (cpu_seconds(browser_pid, True) - cpu_start[2]) / window,
        }
        rows = []
        for tab in tabs:
            driver.switch_to.window(tab)
            stats = read_stats(driver)
            began, frames, video_frames = start[tab]
            samples = [s for s in latencies[tab] if s[0] > 0] or [(float("nan"),) * 2]
            elapsed = time.monotonic() - began
            rows.append(
                {
                    "fps": (stats.frames - frames) / elapsed,
                    # background mode: frames returned; recognized ones are "fps"
                    "video_fps": (stats.video_frames - video_frames) / elapsed,
                    "latency_ms": statistics.median(s[0] for s in samples),
                    "latency_p95_ms": statistics.median(s[1] for s in samples),
                }
            )
        if screenshot is not None:
            driver.switch_to.window(tabs[0])
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        processed = sum(row["fps"] for row in rows)
        cpu["app_cpu_ms_per_frame"] = cpu["app_cores"] * 1e3 / processed if processed else 0.0
        return rows, cpu
    finally:
        driver.quit()


def register(dataset: Path, work: Path, store: str, args: argparse.Namespace) -> None:
    """Register the model the app will load as champion, int8 included unless ``--fp32``."""
    weights, onnx = (args.weights, args.onnx) if args.weights else smoke_model(dataset, work)
    int8 = None
    if not args.fp32:  # as the training flow ships it (calibrated on train images)
        from tasks.inference.export import quantize_int8

        calibration = sorted((dataset / "train" / "images").glob("*.jpg"))[::24]
        int8 = quantize_int8(onnx, calibration, work / "model.int8.onnx")
    artifacts = (work / "artifacts").as_uri()
    register_model(store, weights, onnx, artifact_root=artifacts, int8=int8)


def start_ceiling(port: int, log: Path, env: dict[str, str]) -> Any:
    """Serve ``benchmarks/ceiling_page.py`` as ``start_app`` serves the app."""
    page = REPO / "benchmarks" / "ceiling_page.py"
    args = [str(BIN / "streamlit"), "run", str(page), "--server.address", "127.0.0.1"]
    args += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    return start_server(args, log, env, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a .pt file (default: train a smoke model)")
    parser.add_argument("--onnx", type=Path, help="its ONNX export (with --weights)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    parser.add_argument(
        "--fp32", action="store_true", help="ship no int8 variant (the app then runs fp32)"
    )
    parser.add_argument(
        "--video-width",
        type=int,
        default=640,
        help="camera track width the app asks the browser for (FINGERSPELL_UI_VIDEO_WIDTH)",
    )
    parser.add_argument(
        "--tracking-uri",
        help="serve the champion of this MLflow store (e.g. the one `make demo` trained) "
        "instead of registering a smoke model",
    )
    parser.add_argument(
        "--background",
        action="store_true",
        help="FINGERSPELL_UI_BACKGROUND_RECOGNITION: frames return at once; FPS then counts "
        "recognized frames and video_fps the frames returned",
    )
    parser.add_argument(
        "--no-recognition",
        action="store_true",
        help="serve benchmarks/ceiling_page.py: the same video path, nothing recognized",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        help="save the one-session page here (the README's picture: docs/images/live.png)",
    )
    args = parser.parse_args()
    dataset = dataset_path()

    with tempfile.TemporaryDirectory(prefix="fingerspell-browser-") as tmp:
        work = Path(tmp)
        store = args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
        if not args.no_recognition and not args.tracking_uri:
            register(dataset, work, store, args)
        clip = make_clip(dataset, work / "clip.y4m")
        port, log = free_port(), work / "app.log"
        env = {
            "FINGERSPELL_MLFLOW_TRACKING_URI": store,
            "FINGERSPELL_HOME": str(work / "home"),
            "HOME": str(work),
            "FINGERSPELL_UI_VIDEO_WIDTH": str(args.video_width),
            "FINGERSPELL_UI_BACKGROUND_RECOGNITION": str(args.background).lower(),
        }
        load_before = os.getloadavg()
        app = start_ceiling(port, log, env) if args.no_recognition else start_app(port, log, env)
        try:
            wait_http(f"http://127.0.0.1:{port}/_stcore/health", app, timeout=120, log=log)
            results, cpu = {}, {}
            for n in (1, 4):
                print(f"{n} session(s): starting", flush=True)
                results[n], cpu[n] = measure(
                    f"http://127.0.0.1:{port}/", clip, n, args.seconds, app.pid,
                    args.screenshot if n == 1 else None,
                )  # fmt: skip
                print(f"  FPS per session: {[round(r['fps'], 1) for r in results[n]]}", flush=True)
                print(
                    f"  cores used: app {cpu[n]['app_cores']:.2f}, browser "
                    f"{cpu[n]['browser_cores']:.2f}; app CPU per processed frame "
                    f"{cpu[n]['app_cpu_ms_per_frame']:.1f} ms",
                    flush=True,
                )
                if args.background:
                    video = [round(r["video_fps"], 1) for r in results[n]]
                    print(f"  video FPS per session: {video}", flush=True)
        finally:
            stop(app)
        load_after = os.getloadavg()

    table: list[list[Any]] = []
    payload: dict[str, Any] = {
        "frame_size": "640x480",
        "video_width": args.video_width,
        "recognition": not args.no_recognition,
        "background": args.background,
        "model": "champion of " + args.tracking_uri if args.tracking_uri else "smoke",
        "int8": None if args.tracking_uri else not args.fp32 and not args.no_recognition,
        "seconds": args.seconds,
        "sessions": {},
    }
    for n, rows in results.items():
        fps = [r["fps"] for r in rows]
        latency = statistics.mean(r["latency_ms"] for r in rows)
        p95 = statistics.mean(r["latency_p95_ms"] for r in rows)
        table.append(
            [n, min(fps), statistics.mean(fps), latency, p95, GOALS[n], min(fps) >= GOALS[n]]
        )
        payload["sessions"][str(n)] = {
            "per_session": rows,
            "min_fps": min(fps),
            "mean_fps": statistics.mean(fps),
            "video_fps": [r["video_fps"] for r in rows] if args.background else None,
            "latency_ms": latency,
            "latency_p95_ms": p95,
            "goal_fps": GOALS[n],
            **cpu[n],
        }
    payload["load_average"] = {"before": load_before, "after": load_after}
    print_table(
        ["sessions", "min FPS", "mean FPS", "latency ms", "p95 ms", "goal FPS", "met"], table
    )
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)")
    name = "browser-ceiling" if args.no_recognition else "browser"
    name += "-background" if args.background else ""
    print(f"wrote {write_results(name, payload)}")


if __name__ == "__main__":
    main()
