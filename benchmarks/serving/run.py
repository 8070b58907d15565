"""Serving benchmark: the same scikit-learn model behind Tidal's server, MLflow's, BentoML's
and a bare Starlette floor, each on 127.0.0.1 with 2 worker processes, in one run on the same
machine.

    python benchmarks/serving/run.py [--only tidal,floor,bentoml,mlflow] [--skip-batching]
        [--skip-soak] [--rounds N] [--duration S] [--warmup S] [--soak-seconds S] [--quick]
        [--mlflow-python PATH] [--bentoml-python PATH] [--tidal PATH]
        [--write-results] [--json PATH] [--tmp-root DIR]

(a) throughput and latency at 16 connections (wrk, 1 thread, one fixed single-row body), in
rounds that measure every server in turn, the order rotating; (b) Tidal's latency at a fixed
rate of half its peak (loadgen.py, since Debian has no wrk2), the floor at half of its own;
(c) micro-batching: a model whose single-row predict costs a millisecond or more, 64
connections, Tidal with batching on and off, BentoML's batchable API; (d) a soak at half of
Tidal's peak rate: errors and the growth of the server's resident memory. MLflow and BentoML
run from their own virtual environments (--mlflow-python, else $TIDAL_BENCH_MLFLOW_PYTHON,
else benchmarks/.venvs/mlflow/bin/python; --bentoml-python, else
$TIDAL_BENCH_BENTOML_PYTHON, else benchmarks/.venvs/bentoml/bin/python). Prints each
figure, the ratio and the target. Exit status: 0 when every target and check passes, 1 when
one fails, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENVS = REPO / "benchmarks" / ".venvs"
DEFAULT_MLFLOW_PYTHON = VENVS / "mlflow" / "bin" / "python"
DEFAULT_BENTOML_PYTHON = VENVS / "bentoml" / "bin" / "python"

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import workload as w  # noqa: E402
from report import (  # noqa: E402
    ComparisonTable,
    add_result_options,
    check_anchor_python,
    fail,
    finish,
    fmt_s,
    load_average,
    parse_full_run,
    run_bench,
    say,
)

# Targets of the serving issue.
MLFLOW_RATIO = 10.0
BENTOML_RATIO = 5.0
FLOOR_SHARE = 0.75
HALF_PEAK_P99_S = 10e-3
BATCH_RATIO = 2.0
SOAK_RSS_GROWTH = 0.10
BOOSTED_PREDICT_S = 1e-3

WORKERS = 2
CONNECTIONS = 16
BATCH_CONNECTIONS = 64
MAX_BATCH_SIZE = 64
MAX_WAIT_MS = 2
WRK_TIMEOUT = "2s"
READY_TIMEOUT_S = 240.0
SEQUENTIAL_CALLS = 50

FULL = {"rounds": 3, "duration": 15.0, "warmup": 3.0, "soak_seconds": 300.0,
        "soak_warmup": 10.0}
QUICK = {"rounds": 1, "duration": 5.0, "warmup": 2.0, "soak_seconds": 20.0,
         "soak_warmup": 5.0}

TOOLS = ("tidal", "floor", "bentoml", "mlflow")
BENTOML_VERSION = "1.4.39"
CREATE_MLFLOW = ("python3 -m venv benchmarks/.venvs/mlflow && "
                 "benchmarks/.venvs/mlflow/bin/pip install mlflow==3.17.2")
CREATE_BENTOML = ("python3 -m venv benchmarks/.venvs/bentoml && "
                  f"benchmarks/.venvs/bentoml/bin/pip install bentoml=={BENTOML_VERSION} "
                  "scikit-learn pandas")

#: What each server is called in the table.
LABELS = {
    "tidal": "Tidal", "floor": "floor", "bentoml": "BentoML", "mlflow": "MLflow",
    "mlflow-nodelay": "MLflow's app, TCP_NODELAY listener",
    "tidal-batched": f"Tidal, batching on ({MAX_BATCH_SIZE} rows, {MAX_WAIT_MS} ms)",
    "tidal-single": "Tidal, batching off", "bentoml-batched": "BentoML, batchable API",
    "floor-boosted": "floor (no batching)", "tidal-soak": "Tidal",
}
#: Servers of the batching part that are compared with Tidal's batching figures.
BATCH_SERVERS = ("tidal-batched", "tidal-single", "bentoml-batched", "floor-boosted")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serving benchmark: the same scikit-learn model behind Tidal, MLflow, "
                    "BentoML and a bare Starlette floor.")
    parser.add_argument("--only", help="comma-separated servers to measure, among "
                                       f"{','.join(TOOLS)} (default: all)")
    parser.add_argument("--skip-batching", action="store_true",
                        help="leave out (c), the batching comparison")
    parser.add_argument("--skip-soak", action="store_true", help="leave out (d), the soak")
    parser.add_argument("--rounds", type=int,
                        help=f"rounds of (a) and (c) (default {FULL['rounds']})")
    parser.add_argument("--duration", type=float,
                        help=f"seconds measured per load run (default {FULL['duration']:g})")
    parser.add_argument("--warmup", type=float,
                        help=f"seconds of warm-up before each (default {FULL['warmup']:g})")
    parser.add_argument("--soak-seconds", type=float,
                        help=f"length of the soak (default {FULL['soak_seconds']:g})")
    parser.add_argument("--quick", action="store_true",
                        help="one short round of everything and a 20 s soak, for a smoke "
                             "run; targets are shown but do not set the exit status")
    parser.add_argument("--mlflow-python", default=os.environ.get("TIDAL_BENCH_MLFLOW_PYTHON"),
                        help="interpreter of a virtual environment with MLflow installed "
                             "(default: $TIDAL_BENCH_MLFLOW_PYTHON, else "
                             "benchmarks/.venvs/mlflow/bin/python)")
    parser.add_argument("--bentoml-python",
                        default=os.environ.get("TIDAL_BENCH_BENTOML_PYTHON"),
                        help="interpreter of a virtual environment with BentoML installed "
                             "(default: $TIDAL_BENCH_BENTOML_PYTHON, else "
                             "benchmarks/.venvs/bentoml/bin/python)")
    parser.add_argument("--tidal", help="the tidal command (default: the one installed next "
                                        "to this interpreter)")
    add_result_options(parser, "serving",
                       tmp_root="where the workspaces, models and logs go")
    return parse_full_run(parser, ["--quick", "--only", "--skip-batching", "--skip-soak"])


# -- servers ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    key: str
    command: list[str]
    ready: str  # a GET path that answers 200 once the server takes requests
    path: str  # where predictions are POSTed
    mlflow_format: bool = False  # {"dataframe_records": ...} rather than {"records": ...}
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def body(self, rows: list[dict[str, float]]) -> bytes:
        key = "dataframe_records" if self.mlflow_format else "records"
        return json.dumps({key: rows}, separators=(",", ":")).encode()

    @staticmethod
    def labels(answer: Any) -> list[Any]:
        return answer if isinstance(answer, list) else answer["predictions"]


class Fleet:
    """The servers started so far; all stopped (their whole process trees) on exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.servers: list[Server] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in reversed(self.servers):
            stop(server)
        self.servers.clear()

    def start(self, server: Server) -> Server:
        server.log = self.work / f"{server.key}.log"
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **server.env}
        with open(server.log, "ab") as log:
            server.process = subprocess.Popen(
                server.command, cwd=server.cwd, env=environment, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.servers.append(server)
        return server

    def wait_ready(self, server: Server) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if server.process is None or server.process.poll() is not None:
                fail(f"{LABELS[server.key]} exited before it was ready "
                     f"({server.command[0]} ...)\n{log_tail(server)}")
            try:
                status, _ = request(server.port, "GET", server.ready, None, timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        fail(f"{LABELS[server.key]} was not ready after {READY_TIMEOUT_S:.0f} s\n"
             f"{log_tail(server)}")


def log_tail(server: Server, lines: int = 30) -> str:
    if server.log is None or not server.log.exists():
        return ""
    text = server.log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def tree(server: Server) -> list[Any]:
    """The server's process and all its descendants, as psutil processes."""
    import psutil

    if server.process is None:
        return []
    try:
        root = psutil.Process(server.process.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(server: Server) -> None:
    """SIGTERM to the server's process group (and to any descendant that left it, as
    BentoML's workers do), then SIGKILL to whatever still runs after 20 s."""
    import psutil

    if server.process is None:
        return
    processes = tree(server)
    for process in processes:
        try:
            if process.pid == server.process.pid:
                os.killpg(server.process.pid, signal.SIGTERM)
            elif os.getpgid(process.pid) != server.process.pid:
                process.terminate()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    _, alive = psutil.wait_procs(processes, timeout=20)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    server.process = None


def resident_bytes(server: Server) -> int:
    """The sum of the resident memory of the server's processes."""
    import psutil

    total = 0
    for process in tree(server):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def request(port: int, method: str, path: str, body: bytes | None,
            timeout: float = 30) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data.decode("utf-8", errors="replace")
    finally:
        connection.close()


def answers(server: Server, rows: list[dict[str, float]]) -> list[Any]:
    """The server's labels for ``rows``, sent as one request."""
    status, answer = request(server.port, "POST", server.path, server.body(rows))
    if status != 200:
        fail(f"{LABELS[server.key]} answered {status} to the check rows: {answer}\n"
             f"{log_tail(server)}")
    return [int(label) for label in Server.labels(answer)]


def sequential(server: Server, row: dict[str, float], calls: int = SEQUENTIAL_CALLS) -> float:
    """Median seconds of one request at a time on one keep-alive connection."""
    body = server.body([row])
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    times = []
    try:
        for index in range(calls + 5):
            start = time.perf_counter()
            connection.request("POST", server.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if index >= 5:
                times.append(time.perf_counter() - start)
    finally:
        connection.close()
    return statistics.median(times)


# -- load ---------------------------------------------------------------------------------------

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, latency percentiles, non-2xx answers and socket errors from wrk's output
    (run with --latency)."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text)
    if rate is None or total is None:
        raise ValueError(f"unexpected wrk output:\n{text}")
    latency = {f"p{q}": float(value) * UNITS[unit] for q, value, unit in
               re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                        r"timeout (\d+)", text)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(n) for n in sockets.groups()), strict=True)) if sockets \
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    return {"requests_per_s": float(rate.group(1)), "requests": int(total.group(1)),
            "seconds": float(total.group(2)) * UNITS[total.group(3)], "latency_s": latency,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": socket_errors}


def wrk(server: Server, body: Path, connections: int, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout",
               WRK_TIMEOUT, "--latency", "-s", str(HERE / "load.lua"), server.url]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "BENCH_BODY": str(body)},
                          timeout=seconds + 60)
    if done.returncode != 0:
        fail(f"wrk exited with status {done.returncode}: {' '.join(command)}\n{done.stderr}")
    result = parse_wrk(done.stdout)
    result["output"] = done.stdout
    return result


def measure(server: Server, body: Path, connections: int, sizes: dict[str, Any]
            ) -> dict[str, Any]:
    """A warm-up run, then the measured one."""
    wrk(server, body, connections, sizes["warmup"])
    load = os.getloadavg()[0]
    result = wrk(server, body, connections, sizes["duration"])
    result["load_1min"] = load
    return result


def connection_split(server: Server) -> list[int]:
    """How many of the clients' connections each of the server's processes holds, most
    first (processes holding none left out)."""
    import psutil

    counts = []
    for process in tree(server):
        try:
            listing = getattr(process, "net_connections", process.connections)(kind="tcp")
        except psutil.Error:
            continue
        held = sum(1 for c in listing if c.status == psutil.CONN_ESTABLISHED and c.laddr
                   and c.laddr.port == server.port)
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


def fixed_rate(server: Server, body: Path, rate: float, duration: float, warmup: float,
               schedule: list[float] | None = None) -> dict[str, Any]:
    """loadgen.py against ``server`` at ``rate``. How the connections are spread over the
    server's processes is read once the warm-up is over; with ``schedule`` (seconds from the
    start), the server's resident memory is sampled at those times too."""
    command = [sys.executable, str(HERE / "loadgen.py"), "--url", server.url, "--body",
               str(body), "--rate", f"{rate:.1f}", "--connections", str(CONNECTIONS),
               "--duration", f"{duration:g}", "--warmup", f"{warmup:g}"]
    started = time.monotonic()
    load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    split: list[int] = []
    samples = []
    try:
        for at in sorted({min(warmup + 1, warmup + duration / 2), *(schedule or [])}):
            pause = started + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if load.poll() is not None:
                break
            if not split:
                split = connection_split(server)
            if schedule:
                samples.append({"at_s": round(time.monotonic() - started, 1),
                                "rss": resident_bytes(server)})
        out, _ = load.communicate(timeout=duration + warmup + 120)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if load.returncode != 0 or not lines:
        fail(f"loadgen.py exited with status {load.returncode} against "
             f"{LABELS[server.key]}: {' '.join(command)}")
    result = json.loads(lines[-1])
    result["connection_split"] = split
    if schedule:
        result["samples"] = samples
    return result


# -- running ------------------------------------------------------------------------------------

@dataclass
class Tools:
    selected: list[str]
    tidal: str | None  # the tidal command, None when it has no server yet
    mlflow_python: str | None
    bentoml_python: str | None


def tidal_command(option: str | None) -> str:
    if option:
        return option
    beside = Path(sys.executable).with_name("tidal")
    return str(beside) if beside.exists() else (shutil.which("tidal") or "tidal")


def tidal_serves(command: str) -> bool:
    """Whether this Tidal has its server yet: ``tidal serve`` and ``tidal deploy`` exist."""
    for sub in ("serve", "deploy"):
        try:
            done = subprocess.run([command, sub, "--help"], capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
    return True


def tidal_deploy(tools: Tools, work: Path, endpoint: str, uri: str, *options: str) -> None:
    command = [tools.tidal, "deploy", endpoint, "--route", f"{uri}=100", *options]
    done = subprocess.run(command, capture_output=True, text=True, cwd=work,
                          env={**os.environ, "TIDAL_HOME": str(work / "tidal")})
    if done.returncode != 0:
        fail(f"{' '.join(command)} exited with status {done.returncode}:\n"
             f"{done.stdout}{done.stderr}")


def tidal_server(tools: Tools, work: Path, key: str, endpoint: str) -> Server:
    server = Server(key, [], "/v2/health/ready", f"/predict/{endpoint}",
                    env={"TIDAL_HOME": str(work / "tidal")}, cwd=work)
    server.command = [tools.tidal, "serve", endpoint, "--host", "127.0.0.1", "--port",
                      str(server.port), "--workers", str(WORKERS)]
    return server


def floor_server(work: Path, key: str, kind: str) -> Server:
    server = Server(key, [], "/health", "/predict")
    server.command = [sys.executable, str(HERE / "floor_app.py"), "--model",
                      str(work / "main" / f"{kind}.pkl"), "--port", str(server.port),
                      "--workers", str(WORKERS)]
    return server


def bentoml_server(tools: Tools, work: Path, key: str, service: str, kind: str) -> Server:
    assert tools.bentoml_python is not None
    server = Server(key, [], "/readyz", "/predict", cwd=HERE,
                    env={"SERVING_BENCH_MODEL": str(work / "bentoml" / f"{kind}.pkl"),
                         "BENTOML_HOME": str(work / "bentoml-home"),
                         "BENTOML_DO_NOT_TRACK": "true"})
    server.command = [str(Path(tools.bentoml_python).with_name("bentoml")), "serve",
                      f"bentoml_service:{service}", "--host", "127.0.0.1", "--port",
                      str(server.port)]
    return server


def mlflow_servers(tools: Tools, model: str) -> list[Server]:
    """``mlflow models serve`` as documented, and MLflow's own scoring app on a TCP_NODELAY
    listener (nodelay.py), which shows how much of MLflow's figure is uvicorn's missing
    TCP_NODELAY."""
    assert tools.mlflow_python is not None
    bin_dir = Path(tools.mlflow_python).parent
    shipped = Server("mlflow", [], "/ping", "/invocations", mlflow_format=True,
                     env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    shipped.command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model,
                       "--env-manager", "local", "--workers", str(WORKERS), "-p",
                       str(shipped.port), "-h", "127.0.0.1"]
    nodelay = Server("mlflow-nodelay", [], "/ping", "/invocations", mlflow_format=True,
                     env={"__pyfunc_model_path__": model})
    nodelay.command = [tools.mlflow_python, str(HERE / "nodelay.py"),
                       "mlflow.pyfunc.scoring_server.app:app", "--port", str(nodelay.port),
                       "--workers", str(WORKERS)]
    return [shipped, nodelay]


def prepare(tools: Tools, work: Path, batching: bool) -> dict[str, Any]:
    kinds = "linear,boosted" if batching else "linear"
    found: dict[str, Any] = {}
    say("Training the models in each interpreter (same rows, same seeds)...")
    main_options = ["--out", str(work / "main"), "--kinds", kinds]
    if tools.tidal:
        main_options += ["--tidal-home", str(work / "tidal")]
    found["main"] = run_bench(sys.executable, HERE / "prepare.py", main_options)
    if tools.mlflow_python:
        found["mlflow"] = run_bench(tools.mlflow_python, HERE / "prepare.py",
                                    ["--out", str(work / "mlflow"), "--kinds", "linear",
                                     "--mlflow"])
    if tools.bentoml_python:
        found["bentoml"] = run_bench(tools.bentoml_python, HERE / "prepare.py",
                                     ["--out", str(work / "bentoml"), "--kinds", kinds])
    return found


def start_all(fleet: Fleet, servers: list[Server]) -> None:
    say("Starting " + ", ".join(LABELS[s.key] for s in servers) + "...")
    for server in servers:
        fleet.start(server)
    for server in servers:
        fleet.wait_ready(server)


def check_all(servers: list[Server], rows: list[dict[str, float]],
              expected: list[int]) -> dict[str, Any]:
    found = {}
    for server in servers:
        labels = answers(server, rows)
        found[server.key] = {"labels": labels, "same": labels == expected,
                             "sequential_s": sequential(server, rows[0])}
    return found


def rounds_of(servers: list[Server], bodies: dict[str, Path], connections: int,
              sizes: dict[str, Any], part: str) -> list[dict[str, Any]]:
    results = []
    for index in range(sizes["rounds"]):
        shift = index % len(servers)
        order = servers[shift:] + servers[:shift]
        say(f"{part}, round {index + 1} of {sizes['rounds']}, {connections} connections: "
            + ", ".join(LABELS[s.key] for s in order) + f" ({sizes['warmup']:g} s warm-up "
            f"+ {sizes['duration']:g} s each)...")
        results.append({s.key: measure(s, bodies[s.key], connections, sizes) for s in order})
    return results


def run_all(tools: Tools, work: Path, sizes: dict[str, Any], batching: bool,
            soak: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {"sizes": sizes, "selected": tools.selected,
                           "tidal": "measured" if tools.tidal else (
                               "not yet available" if "tidal" in tools.selected
                               else "not selected")}
    raw["prepare"] = found = prepare(tools, work, batching)
    check = w.records(w.check_frame())
    row = check[0]
    expected = {kind: found["main"]["models"][kind]["labels"] for kind in
                found["main"]["models"]}

    # (a) and (b)
    servers: list[Server] = []
    if tools.tidal:
        tidal_deploy(tools, work, "bench", found["main"]["models"]["linear"]["tidal_uri"])
        servers.append(tidal_server(tools, work, "tidal", "bench"))
    if "floor" in tools.selected:
        servers.append(floor_server(work, "floor", "linear"))
    if tools.bentoml_python:
        servers.append(bentoml_server(tools, work, "bentoml", "Predictor", "linear"))
    if tools.mlflow_python:
        servers += mlflow_servers(tools, found["mlflow"]["models"]["linear"]["mlflow_model"])
    bodies = {}
    for server in servers:
        bodies[server.key] = work / f"body-{server.key}.json"
        bodies[server.key].write_bytes(server.body([row]))
    with Fleet(work) as fleet:
        start_all(fleet, servers)
        say("Checking every server's answers on the check rows, and one request at a time "
            "on one connection...")
        raw["checks"] = check_all(servers, check, expected["linear"])
        raw["throughput"] = rounds_of(servers, bodies, CONNECTIONS, sizes, "(a) throughput")
        by_key = {s.key: s for s in servers}
        raw["fixed_rate"] = {}
        for key in ("tidal", "floor"):
            if key not in by_key:
                continue
            rate = statistics.median(r[key]["requests_per_s"] for r in raw["throughput"]) / 2
            say(f"(b) {LABELS[key]} at a fixed {rate:,.0f} requests/s (half of its peak), "
                f"{CONNECTIONS} connections...")
            raw["fixed_rate"][key] = fixed_rate(by_key[key], bodies[key], rate,
                                                sizes["duration"], sizes["warmup"])

    # (c)
    if batching:
        batch_servers: list[Server] = []
        uri = found["main"]["models"]["boosted"].get("tidal_uri")
        if tools.tidal:
            tidal_deploy(tools, work, "boosted-batched", uri, "--max-batch-size",
                         str(MAX_BATCH_SIZE), "--max-wait-ms", str(MAX_WAIT_MS))
            tidal_deploy(tools, work, "boosted-single", uri, "--max-batch-size", "1")
            batch_servers += [tidal_server(tools, work, "tidal-batched", "boosted-batched"),
                              tidal_server(tools, work, "tidal-single", "boosted-single")]
        if tools.bentoml_python:
            batch_servers.append(bentoml_server(tools, work, "bentoml-batched",
                                                "BatchPredictor", "boosted"))
        if "floor" in tools.selected:
            batch_servers.append(floor_server(work, "floor-boosted", "boosted"))
        for server in batch_servers:
            bodies[server.key] = work / f"body-{server.key}.json"
            bodies[server.key].write_bytes(server.body([row]))
        if batch_servers:
            with Fleet(work) as fleet:
                start_all(fleet, batch_servers)
                say("Checking the batching servers' answers...")
                raw["batch_checks"] = check_all(batch_servers, check, expected["boosted"])
                raw["batching"] = rounds_of(batch_servers, bodies, BATCH_CONNECTIONS, sizes,
                                            "(c) batching")

    # (d)
    if soak and tools.tidal:
        raw["soak"] = run_soak(tools, work, bodies["tidal"],
                               raw["fixed_rate"]["tidal"]["rate"], sizes)
    return raw


def run_soak(tools: Tools, work: Path, body: Path, rate: float,
             sizes: dict[str, Any]) -> dict[str, Any]:
    """A fresh Tidal server at ``rate`` for the soak's length; its resident memory sampled
    after the warm-up, then every 1/20th of the soak, the last one second before the end."""
    seconds, warmup = sizes["soak_seconds"], sizes["soak_warmup"]
    with Fleet(work) as fleet:
        server = tidal_server(tools, work, "tidal-soak", "bench")
        start_all(fleet, [server])
        say(f"(d) soak: Tidal at {rate:,.0f} requests/s for {seconds:g} s after a "
            f"{warmup:g} s warm-up, sampling its resident memory...")
        step = max(seconds / 20, 1.0)
        schedule = [warmup + k * step for k in range(int(seconds // step))]
        schedule.append(warmup + seconds - 1)
        load = fixed_rate(server, body, rate, seconds, warmup, schedule)
    samples = load.pop("samples")
    if len(samples) < 2:
        fail("the soak's load generator ended early")
    return {"rate": rate, "seconds": seconds, "warmup": warmup, "samples": samples,
            "load": load}


# -- the table ----------------------------------------------------------------------------------

def rps(value: float) -> str:
    return f"{value:,.0f}/s"


def times(ratio: float) -> str:
    if math.isnan(ratio):
        return "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def latencies(result: dict[str, Any]) -> str:
    latency = result["latency_s"]
    return f"{fmt_s(latency['p50'])} / {fmt_s(latency['p99'])}"


def errors(result: dict[str, Any]) -> int:
    return result["non2xx"] + sum(result["socket_errors"].values())


def split_text(split: list[int]) -> str:
    return " + ".join(str(n) for n in split) if split else "-"


def median_of(results: list[dict[str, Any]], key: str, field_: str = "requests_per_s"
              ) -> float:
    return statistics.median(r[key][field_] for r in results)


NOT_YET = "not yet available"


def build_table(raw: dict[str, Any], quick: bool) -> ComparisonTable:
    table = ComparisonTable()
    measured = raw["tidal"] == "measured"
    wanted = "tidal" in raw["selected"]
    found = raw["prepare"]
    main = found["main"]["models"]

    # the models
    sums = {name: {kind: m["checksum"] for kind, m in side["models"].items()}
            for name, side in found.items()}
    same = all(sums[name][kind] == sums["main"][kind] for name in sums for kind in sums[name])
    table.add("Same model in every interpreter (sum of probabilities, 20 rows)",
              f"{main['linear']['checksum']:.6f}", "", target="equal", passed=same,
              check=True)
    table.add("Linear model: predict in process, 1 row", fmt_s(main["linear"]["predict_1_s"]))

    # (a)
    throughput = raw["throughput"]
    keys = list(throughput[0])
    checks = raw["checks"]
    for key in keys:
        table.add(f"(a) {LABELS[key]}: same labels as in process (20 rows)", "", "",
                  target="equal", passed=checks[key]["same"], check=True)
    tidal_rps = median_of(throughput, "tidal") if measured else math.nan
    comparisons = [("mlflow", MLFLOW_RATIO, f">= {MLFLOW_RATIO:.0f}x"),
                   ("bentoml", BENTOML_RATIO, f">= {BENTOML_RATIO:.0f}x"),
                   ("floor", FLOOR_SHARE, f">= {FLOOR_SHARE:.0%} of the floor")]
    for key, goal, target in comparisons:
        if key not in keys:
            continue
        other = median_of(throughput, key)
        figure = f"(a) throughput, {CONNECTIONS} connections: Tidal vs {LABELS[key]}"
        if not measured:
            table.add(figure, NOT_YET if wanted else "", rps(other), "", target,
                      passed=False if wanted else None)
            continue
        ratios = [r["tidal"]["requests_per_s"] / r[key]["requests_per_s"] for r in throughput]
        ratio = statistics.median(ratios)
        shown = f"{ratio:.0%}" if key == "floor" else times(ratio)
        table.add(figure, rps(tidal_rps), rps(other), shown, target, ratio >= goal)
        if len(ratios) > 1:
            spread = (f"{min(ratios):.0%} .. {max(ratios):.0%}" if key == "floor"
                      else f"{times(min(ratios))} .. {times(max(ratios))}")
            table.add(f"(a) ratio per round (min..max), vs {LABELS[key]}", "", "", spread)
    if "mlflow-nodelay" in keys:
        other = median_of(throughput, "mlflow-nodelay")
        ratio = tidal_rps / other if measured else math.nan
        table.add(f"(a) throughput: Tidal vs {LABELS['mlflow-nodelay']}",
                  rps(tidal_rps) if measured else NOT_YET if wanted else "", rps(other),
                  times(ratio))
    for key in keys:
        result = min((r[key] for r in throughput), key=lambda r: abs(
            r["requests_per_s"] - median_of(throughput, key)))
        is_tidal = key == "tidal"
        table.add(f"(a) {LABELS[key]}: p50 / p99 at peak (median round)",
                  latencies(result) if is_tidal else "", "" if is_tidal else latencies(result))
    for key in keys:
        value = fmt_s(checks[key]["sequential_s"])
        table.add(f"(a) {LABELS[key]}: one request at a time on one connection, median",
                  value if key == "tidal" else "", "" if key == "tidal" else value)
    for key in keys:
        count = sum(errors(r[key]) for r in throughput)
        table.add(f"(a) {LABELS[key]}: non-2xx answers and socket errors", "", str(count),
                  target="0", passed=count == 0, check=True)

    # (b)
    fixed = raw.get("fixed_rate", {})
    tidal_fixed, floor_fixed = fixed.get("tidal"), fixed.get("floor")
    figure = "(b) p99 at a fixed rate of half the peak"
    target = f"<= {fmt_s(HALF_PEAK_P99_S)}"
    if tidal_fixed is not None:
        p99 = tidal_fixed["latency_s"]["p99"]
        table.add(figure, fmt_s(p99), fmt_s(floor_fixed["latency_s"]["p99"]) if floor_fixed
                  else "", target=target, passed=p99 <= HALF_PEAK_P99_S)
    elif wanted:
        table.add(figure, NOT_YET, target=target, passed=False)
    elif floor_fixed is not None:
        table.add(figure, "", fmt_s(floor_fixed["latency_s"]["p99"]))
    if fixed:
        sides = (tidal_fixed, floor_fixed)
        table.add("(b) the rate (requests/s)",
                  *[f"{side['rate']:,.0f}/s" if side else "" for side in sides])
        for label, path in (("p50", ("latency_s", "p50")), ("p99.9", ("latency_s", "p99.9")),
                            ("p99 from the send, not the due time",
                             ("service_latency_s", "p99"))):
            table.add(f"(b) {label}",
                      *[fmt_s(side[path[0]][path[1]]) if side else "" for side in sides])
        for key, side in (("tidal", tidal_fixed), ("floor", floor_fixed)):
            if side is None:
                continue
            count = sum(side["errors"].values())
            table.add(f"(b) {LABELS[key]}: errors (non-2xx, socket, timeout)",
                      str(count) if key == "tidal" else "", "" if key == "tidal" else str(count),
                      target="0", passed=count == 0, check=True)
        table.add("(b) the 16 connections, per worker process",
                  *[split_text(side["connection_split"]) if side else "" for side in sides])
        for key, side in (("tidal", tidal_fixed), ("floor", floor_fixed)):
            if side is None:
                continue
            own = side["own_send_lag_s"]["p99"]
            table.add(f"(b) load generator, {LABELS[key]}: achieved rate, own send lag p99, "
                      "CPU", "", f"{side['achieved_rate']:,.0f}/s, "
                      f"{fmt_s(own) if not math.isnan(own) else '-'}, {side['cpu_share']:.0%}")

    # (c)
    batching = raw.get("batching")
    if batching is not None:
        keys = list(batching[0])
        boosted = main["boosted"]["predict_1_s"]
        table.add(f"(c) boosted model ({w.BOOSTED_TREES} trees): predict in process, 1 row",
                  fmt_s(boosted), f"{fmt_s(main['boosted']['predict_64_s'])} for 64 rows",
                  target=f">= {fmt_s(BOOSTED_PREDICT_S)}", passed=boosted >= BOOSTED_PREDICT_S,
                  check=True)
        for key in keys:
            table.add(f"(c) {LABELS[key]}: same labels as in process (20 rows)", "", "",
                      target="equal", passed=raw["batch_checks"][key]["same"], check=True)
        figure = f"(c) throughput, {BATCH_CONNECTIONS} connections: batching on vs off"
        if "tidal-batched" in keys:
            on = median_of(batching, "tidal-batched")
            off = median_of(batching, "tidal-single")
            ratios = [r["tidal-batched"]["requests_per_s"] / r["tidal-single"]["requests_per_s"]
                      for r in batching]
            ratio = statistics.median(ratios)
            table.add(figure, rps(on), rps(off), times(ratio), f">= {BATCH_RATIO:.0f}x",
                      ratio >= BATCH_RATIO)
            if len(ratios) > 1:
                table.add("(c) ratio per round (min..max)", "", "",
                          f"{times(min(ratios))} .. {times(max(ratios))}")
            for key in ("tidal-batched", "tidal-single"):
                count = sum(errors(r[key]) for r in batching)
                table.add(f"(c) {LABELS[key]}: non-2xx answers and socket errors", str(count),
                          target="0", passed=count == 0)
        elif wanted:
            table.add(figure, NOT_YET, target=f">= {BATCH_RATIO:.0f}x", passed=False)
        for key in ("bentoml-batched", "floor-boosted"):
            if key not in keys:
                continue
            other = median_of(batching, key)
            ratio = median_of(batching, "tidal-batched") / other if "tidal-batched" in keys \
                else math.nan
            table.add(f"(c) Tidal batching on vs {LABELS[key]}",
                      rps(median_of(batching, "tidal-batched")) if "tidal-batched" in keys
                      else "", rps(other), times(ratio))
            non2xx = sum(r[key]["non2xx"] for r in batching)
            sockets = sum(sum(r[key]["socket_errors"].values()) for r in batching)
            table.add(f"(c) {LABELS[key]}: non-2xx answers / socket errors", "",
                      f"{non2xx} / {sockets}")
        for key in keys:
            result = min((r[key] for r in batching), key=lambda r: abs(
                r["requests_per_s"] - median_of(batching, key)))
            is_tidal = key.startswith("tidal")
            table.add(f"(c) {LABELS[key]}: p50 / p99 (median round)",
                      latencies(result) if is_tidal else "",
                      "" if is_tidal else latencies(result))

    # (d)
    soak = raw.get("soak")
    if soak is not None:
        load = soak["load"]
        count = sum(load["errors"].values())
        table.add(f"(d) soak, {soak['seconds']:g} s at {soak['rate']:,.0f} req/s: errors",
                  f"{count} of {load['requests']:,}", target="0", passed=count == 0)
        start, end = soak["samples"][0]["rss"], soak["samples"][-1]["rss"]
        growth = end / start - 1
        table.add(f"(d) resident memory, after the warm-up .. at the end "
                  f"({len(soak['samples'])} samples)", f"{mib(start)} .. {mib(end)}",
                  ratio=f"{growth:+.1%}", target=f"< +{SOAK_RSS_GROWTH:.0%}",
                  passed=growth < SOAK_RSS_GROWTH)
        table.add("(d) largest sample", mib(max(s["rss"] for s in soak["samples"])))
        table.add("(d) the 16 connections, per worker process",
                  split_text(load["connection_split"]))
        table.add("(d) achieved rate; p50 / p99", f"{load['achieved_rate']:,.0f}/s; "
                  f"{fmt_s(load['latency_s']['p50'])} / {fmt_s(load['latency_s']['p99'])}")
    elif wanted and not raw.get("skip_soak"):
        table.add("(d) soak at half of Tidal's peak: errors and memory growth", NOT_YET,
                  target=f"0, < +{SOAK_RSS_GROWTH:.0%}", passed=False)
    if quick:
        table.enforce_checks_only()
    return table


def header(raw: dict[str, Any], quick: bool) -> str:
    found = raw["prepare"]
    main = found["main"]
    sizes = raw["sizes"]
    versions = [f"Tidal {main['tidal']}" if "tidal" in main else
                f"Tidal: {raw['tidal']}"]
    if "mlflow" in found:
        versions.append(f"MLflow {found['mlflow']['mlflow']} (mlflow models serve "
                        "--env-manager local)")
    if "bentoml" in found:
        versions.append(f"BentoML {found['bentoml']['bentoml']}")
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True,
                                 text=True).stdout.split("[")[0].strip()
    loads = [r[key]["load_1min"] for part in ("throughput", "batching")
             for r in raw.get(part, []) for key in r]
    lines = [
        "; ".join(versions) + f"; Python {main['python']}, scikit-learn {main['sklearn']}, "
        f"pandas {main['pandas']} in every interpreter. Every server: 127.0.0.1, "
        f"{WORKERS} worker processes, OMP/BLAS threads 1.",
        (f"Model of (a), (b), (d): LogisticRegression on {len(w.FEATURES)} float columns, "
         f"trained on {w.ROWS:,} rows of a DataFrame; every server builds a DataFrame from the "
         "request's records. Tidal: validation, metrics and prediction log on and batching of "
         "requests that arrive while the model is busy (its defaults), registered with a "
         "50-row input example; MLflow: the same example, so it checks a signature too."),
        (f"(a), (c): {wrk_version}, 1 thread, one fixed single-row JSON body, {sizes['rounds']}"
         f" round(s), each server {sizes['warmup']:g} s warm-up + {sizes['duration']:g} s "
         "measured per round, the order rotating; figures are medians over the rounds. "
         "Ratio: Tidal's requests/s over the other's (for the floor, Tidal's share)."),
        ("(b), (d): loadgen.py, open-loop fixed rate over 16 connections, latency from each "
         "request's due time (wrk2's method); Debian has no wrk2."),
        (f"(c): GradientBoostingClassifier, {w.BOOSTED_TREES} trees of depth "
         f"{w.BOOSTED_DEPTH}; {BATCH_CONNECTIONS} connections; Tidal --max-batch-size "
         f"{MAX_BATCH_SIZE} --max-wait-ms {MAX_WAIT_MS} vs --max-batch-size 1; BentoML "
         f"@bentoml.api(batchable=True, max_batch_size={MAX_BATCH_SIZE})."),
    ]
    if loads:
        lines.append(f"Load average (1 min) when each measured run started: "
                     f"{min(loads):.2f} .. {max(loads):.2f}.")
    if quick:
        lines.append("QUICK RUN: short runs, one round; targets apply to the full run only.")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    selected = list(TOOLS) if not args.only else [t.strip() for t in args.only.split(",")
                                                   if t.strip()]
    unknown = sorted(set(selected) - set(TOOLS))
    if unknown or not selected:
        fail(f"--only takes some of {','.join(TOOLS)}; got {args.only!r}")
    if shutil.which("wrk") is None:
        fail("wrk is not installed; on Debian or Ubuntu: sudo apt-get install wrk")
    mlflow_python = bentoml_python = None
    if "mlflow" in selected:
        mlflow_python = args.mlflow_python or str(DEFAULT_MLFLOW_PYTHON)
        check_anchor_python(mlflow_python, "mlflow", "MLflow", "--mlflow-python",
                            "TIDAL_BENCH_MLFLOW_PYTHON", CREATE_MLFLOW)
    if "bentoml" in selected:
        bentoml_python = args.bentoml_python or str(DEFAULT_BENTOML_PYTHON)
        check_anchor_python(bentoml_python, "bentoml", "BentoML", "--bentoml-python",
                            "TIDAL_BENCH_BENTOML_PYTHON", CREATE_BENTOML)
    tidal = None
    if "tidal" in selected:
        tidal = tidal_command(args.tidal)
        if not tidal_serves(tidal):
            say(f"{tidal} has no 'serve' and 'deploy' commands yet: Tidal is reported as "
                f"{NOT_YET}.")
            tidal = None
    tools = Tools(selected, tidal, mlflow_python, bentoml_python)
    sizes = dict(QUICK if args.quick else FULL)
    for name in ("rounds", "duration", "warmup", "soak_seconds"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    if sizes["rounds"] < 1 or sizes["duration"] <= 0 or sizes["soak_seconds"] < 2:
        fail("--rounds must be at least 1, --duration positive, --soak-seconds at least 2")

    def stop_on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop_on_term)
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="tidal-bench-serving-", dir=args.tmp_root))
    try:
        raw = run_all(tools, work, sizes, not args.skip_batching, not args.skip_soak)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raw["skip_soak"] = args.skip_soak
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2), encoding="utf-8")
    table = build_table(raw, args.quick)
    finish(table, header(raw, args.quick), quick=args.quick, write=args.write_results,
           name="serving", title="Serving: Tidal against MLflow, BentoML and a bare floor",
           load_before=load_before,
           facts=[f"CPUs this process may use: {len(os.sched_getaffinity(0))}"])


if __name__ == "__main__":
    main()
