"""``imgcomp study pilot``: simulated raters drive the real app over HTTP, then the analysis.

The app runs under uvicorn on a local port with a fresh database; each simulated rater is an HTTP
client with its own cookie jar, and several run at once (threads). A rater reads the instructions,
consents, and for each trial fetches the three images the page shows (by their opaque URLs, as a
browser does) and votes. An *attentive* rater votes like a Thurstone case V observer: with
``d`` a perceptual distance to the original (ST-LPIPS, or 1 - MS-SSIM),
``P(left) = Φ((d_right - d_left) / noise)``. An *inattentive* rater picks a side at random,
so they usually fail an attention check. Every rater also re-sends one vote (which must be refused
with 409) and, halfway, closes the tab: a new client with the same cookie resumes.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.errors import ImgcompError

METRICS = ("lpips", "ms-ssim")


@dataclass
class PilotStats:
    """What the simulated raters saw: votes, refused duplicates, resumes, seconds."""

    raters: int = 0
    inattentive: int = 0
    votes: int = 0
    duplicates_refused: int = 0
    duplicates_accepted: int = 0
    resumes: int = 0
    seconds: float = 0.0
    metric: str = ""
    noise: float = 0.0
    errors: list[str] = field(default_factory=list)


class _Distances:
    """Perceptual distance of an image to its reference, both fetched over HTTP; cached by URL."""

    def __init__(self, metric: str) -> None:
        if metric not in METRICS:
            raise ImgcompError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.metric = metric
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], float] = {}
        self._images: dict[str, np.ndarray] = {}

    def image(self, client, url: str) -> np.ndarray:
        from imgcomp.io import load_image

        with self._lock:
            if url in self._images:
                return self._images[url]
        response = client.get(url)
        response.raise_for_status()
        array = load_image(response.content)
        with self._lock:
            self._images[url] = array
        return array

    def __call__(self, client, reference: str, other: str) -> float:
        key = (reference, other)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        a, b = self.image(client, reference), self.image(client, other)
        with self._lock:  # one metric evaluation at a time: torch threads are shared anyway
            if key not in self._cache:
                self._cache[key] = self._distance(a, b)
            return self._cache[key]

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        if self.metric == "lpips":
            from imgcomp.lpips import lpips

            return float(lpips(a, b))
        from imgcomp.metrics import ms_ssim

        return 1.0 - float(ms_ssim(a, b, allow_fewer_scales=True))


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LocalServer:
    """Run an ASGI app under uvicorn in a background thread on a free local port."""

    def __init__(self, app) -> None:
        import uvicorn

        self._sock = _free_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ImgcompError("the study server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _simulate_rater(base_url: str, attentive: bool, distances: _Distances, noise: float,
                    seed: int, stats: PilotStats, lock: threading.Lock) -> None:
    import httpx2 as httpx

    rng = random.Random(seed)
    client = httpx.Client(base_url=base_url, follow_redirects=True, timeout=60)
    try:
        page = client.get("/")
        page.raise_for_status()
        started = client.post("/start", data={"consent": "yes"})
        started.raise_for_status()
        cookie = dict(client.cookies)
        duplicate_sent, resumed, votes, answered = False, False, 0, 0
        while True:
            trial = client.get("/api/trial").json()
            if trial["done"]:
                break
            if not resumed and trial["position"] >= trial["total"] // 2:
                client.close()  # closes the tab; the same browser (cookie) comes back
                client = httpx.Client(base_url=base_url, follow_redirects=True, timeout=60, cookies=cookie)
                resumed = True
                again = client.get("/api/trial").json()
                if again.get("token") != trial["token"]:
                    raise ImgcompError("resume served another trial than the one left open")
            if attentive:
                d_left = distances(client, trial["reference"], trial["left"])
                d_right = distances(client, trial["reference"], trial["right"])
                p_left = _phi((d_right - d_left) / noise)
            else:
                p_left = 0.5
            vote = {"token": trial["token"], "choice": "left" if rng.random() < p_left else "right",
                    "response_ms": int(rng.lognormvariate(8.5, 0.5)), "magnifier": rng.random() < 0.7}
            response = client.post("/api/vote", json=vote)
            response.raise_for_status()
            votes += 1
            answered = response.json()["answered"]
            if not duplicate_sent:
                duplicate_sent = True
                second = client.post("/api/vote", json=vote)
                with lock:
                    if second.status_code == 409:
                        stats.duplicates_refused += 1
                    else:
                        stats.duplicates_accepted += 1
        with lock:
            stats.votes += votes
            stats.resumes += resumed
            if answered != votes:
                stats.errors.append(f"rater {seed}: server counts {answered} answers, sent {votes}")
    finally:
        client.close()


def run_pilot(study_folder: str | Path, db_url: str, *, raters: int = 20, inattentive: int = 3,
              concurrency: int = 4, metric: str = "lpips", noise: float = 0.02, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> PilotStats:
    """Serve the study with votes in ``db_url`` and let ``raters`` simulated raters (the first
    ``inattentive`` of them voting at random) rate it, ``concurrency`` at a time."""
    from imgcomp.study.app import create_app

    if raters < 1 or not 0 <= inattentive <= raters:
        raise ImgcompError("--raters must be >= 1 and --inattentive in [0, raters]")
    if concurrency < 1:
        raise ImgcompError("--concurrency must be >= 1")
    if not noise > 0:
        raise ImgcompError("--noise must be > 0")
    distances = _Distances(metric)
    app = create_app(study_folder, db_url)
    stats = PilotStats(raters=raters, inattentive=inattentive, metric=metric, noise=noise)
    lock = threading.Lock()
    begin = time.perf_counter()
    order = list(range(raters))
    random.Random(seed).shuffle(order)  # inattentive raters arrive among the others
    with LocalServer(app) as server, ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(_simulate_rater, server.url, i >= inattentive, distances, noise,
                               seed * 100_003 + i, stats, lock) for i in order]
        for done, future in enumerate(futures, 1):
            future.result()
            if progress:
                progress(f"rater {done}/{raters} finished")
    stats.seconds = round(time.perf_counter() - begin, 2)
    return stats


def pilot_record(stats: PilotStats) -> dict[str, Any]:
    return dict(stats.__dict__)
