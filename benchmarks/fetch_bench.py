"""Fetch benchmark: our HTTP fetch vs curl, sequential and parallel, on a loopback server.

One command::

    .venv/bin/python benchmarks/fetch_bench.py            # 8 files x 64 MB, 3 rounds
    .venv/bin/python benchmarks/fetch_bench.py --files 4 --size-mb 16 --rounds 1   # quick

Files are generated in a temporary folder (deleted afterwards) and served by a separate process
(sendfile, HTTP/1.1), so neither client shares a GIL or CPU time with the server's Python code.
Our fetch runs in a child process too, as it would in a pipeline step; it is timed from its
first request to its last rename (interpreter start-up excluded; curl's is ~5 ms), and also
whole-process (start-up and imports included, exactly as curl is timed; with a bytecode cache,
as an installed package has, filled by one untimed run). Ours verifies a sha256 for every file
and fsyncs before renaming, curl does neither: the comparison is our whole production path
against curl's bare download. For reference the whole-process line also gives curl followed by
``sha256sum`` (a script verifying its downloads after the fact).

Printed per mode: MB/s (median over rounds), ratio ours/curl (goal >= 0.9), and our peak RSS
with its growth during the downloads (must stay far below the file size: we stream).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

# The driver's own modules (argparse, subprocess, statistics...) are imported in the driver's
# functions: the "--ours" child runs this file too, and a fetch step's process would not load
# them, so they must not count against our start-up.

BLOCK = 4 << 20


# --- server (child process) -----------------------------------------------------------------
def serve(root: str) -> None:
    """Serve files under ``root`` with sendfile on an ephemeral loopback port (printed)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = os.path.join(root, os.path.basename(self.path))
            if not os.path.isfile(path):
                self.send_error(404)
                return
            size = os.path.getsize(path)
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.flush()
            with open(path, "rb") as fh:
                offset = 0
                while offset < size:
                    sent = os.sendfile(self.connection.fileno(), fh.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- our client (child process) -----------------------------------------------------------------
def run_ours(spec_path: str) -> None:
    """Fetch the sources in the JSON spec; print wall seconds and RSS figures as JSON."""
    from concurrent.futures import ThreadPoolExecutor

    from hpc_workflows.fetch import FetchSettings, Source, fetch
    import hpc_workflows.fetch.http  # noqa: F401 - import the HTTP path before the clock starts, like curl's start-up

    import hpc_workflows.fetch.fetcher as fetcher

    # Measure (not change) the time spent making files durable, to show it in the table.
    synced = {"seconds": 0.0}

    def timed(func):
        def wrapper(path):
            t0 = time.perf_counter()
            func(path)
            synced["seconds"] += time.perf_counter() - t0
        return wrapper

    fetcher.fsync_file, fetcher.fsync_dir = timed(fetcher.fsync_file), timed(fetcher.fsync_dir)
    spec = json.loads(Path(spec_path).read_text())
    sources = [Source(key=f"f{i}", url=u, checksum=c) for i, (u, c) in enumerate(spec["sources"])]
    settings = FetchSettings(max_connections_per_host=max(1, spec["parallel"]), fsync=spec["fsync"])
    dest = Path(spec["dest"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_before = usage.ru_maxrss * 1024
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    if spec["parallel"] <= 1:
        results = [fetch(s, dest, settings) for s in sources]
    else:
        with ThreadPoolExecutor(spec["parallel"]) as pool:
            results = list(pool.map(lambda s: fetch(s, dest, settings), sources))
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_peak = usage.ru_maxrss * 1024
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    assert all(r.verified and not r.skipped for r in results)
    print(json.dumps({"seconds": seconds, "bytes": sum(r.bytes for r in results),
                      "rss_before": rss_before, "rss_peak": rss_peak,
                      "fsync_seconds": synced["seconds"], "cpu_seconds": cpu}))


# --- driver -----------------------------------------------------------------------------------
def make_files(folder: Path, count: int, size: int) -> list[tuple[str, str]]:
    """Write ``count`` random files of ``size`` bytes; return (name, sha256) pairs."""
    import hashlib

    out = []
    for i in range(count):
        name = f"file{i:02d}.bin"
        digest = hashlib.sha256()
        with open(folder / name, "wb") as fh:
            left = size
            while left:
                block = os.urandom(min(BLOCK, left))
                fh.write(block)
                digest.update(block)
                left -= len(block)
        out.append((name, digest.hexdigest()))
    return out


def time_curl(urls: list[str], dest: Path, parallel: int, then_hash: bool = False) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one curl run (then ``sha256sum`` of the
    downloaded files when ``then_hash``: what a shell script verifying its downloads costs)."""
    import subprocess

    args = ["curl", "--silent", "--show-error", "--fail", "--no-progress-meter"]
    if parallel > 1:
        args += ["--parallel", "--parallel-max", str(parallel)]
    for url in urls:
        args += ["-o", str(dest / url.rsplit("/", 1)[1]), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, check=True)
    if then_hash:
        subprocess.run(["sha256sum", *(str(dest / url.rsplit("/", 1)[1]) for url in urls)], check=True,
                       stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def child_env(work: Path) -> dict[str, str]:
    """Environment for our child: with a bytecode cache, as an installed package has.

    Without it (PYTHONDONTWRITEBYTECODE, common on development machines) every run compiles
    our modules from source again, which no production run does.  The cache lives in the
    benchmark's temporary folder, so the checkout gets no ``__pycache__`` folders.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def time_ours(urls: list[str], sums: list[str], dest: Path, parallel: int, work: Path, fsync: bool) -> dict:
    import subprocess

    spec = work / "spec.json"
    spec.write_text(json.dumps({"sources": [[u, f"sha256:{s}"] for u, s in zip(urls, sums)],
                                "dest": str(dest), "parallel": parallel, "fsync": fsync}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--ours", str(spec)], check=True,
                          capture_output=True, text=True, env=child_env(work))
    # Whole process, as curl is timed: interpreter start-up, imports, downloads, exit.
    process_seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["process_seconds"] = process_seconds
    info["process_cpu_seconds"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return info


def main(argv: list[str] | None = None) -> int:
    import argparse
    import shutil
    import statistics
    import subprocess
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        print("curl is not installed: nothing to compare against", file=sys.stderr)
        return 2
    size = args.size_mb << 20
    total = args.files * size
    work = Path(tempfile.mkdtemp(prefix="fetch-bench-"))
    server = None
    try:
        served = work / "served"
        served.mkdir()
        files = make_files(served, args.files, size)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(served)], stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline())
        urls = [f"http://127.0.0.1:{port}/{name}" for name, _ in files]
        sums = [s for _, s in files]
        # One untimed run fills the child's bytecode cache (see child_env).
        (work / "dest").mkdir()
        time_ours(urls[:1], sums[:1], work / "dest", 1, work, fsync=False)
        rates: dict[tuple[str, str], list[float]] = {}
        rss: dict[str, dict] = {}
        fsyncs: dict[str, list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        whole: dict[tuple[str, str], list[float]] = {}
        tools = ("curl", "ours", "ours_nofsync", "curl_sha256sum")
        for round_number in range(args.rounds):
            for mode, par in (("sequential", 1), ("parallel", args.parallel)):
                # Rotate the order so no tool always runs right after another's writes.
                shift = round_number % len(tools)
                for tool in tools[shift:] + tools[:shift]:
                    dest = work / "dest"
                    shutil.rmtree(dest, ignore_errors=True)
                    dest.mkdir()
                    # Start every run with no dirty pages left by the previous one: otherwise
                    # the kernel makes whoever runs next pay for writing back the last run's data.
                    os.sync()
                    if tool in ("curl", "curl_sha256sum"):
                        seconds, cpu = time_curl(urls, dest, par, then_hash=tool == "curl_sha256sum")
                    else:
                        info = time_ours(urls, sums, dest, par, work, fsync=tool == "ours")
                        seconds, cpu = info["seconds"], info["cpu_seconds"]
                        whole.setdefault((mode, tool), []).append(total / 1e6 / info["process_seconds"])
                        if tool == "ours":
                            fsyncs.setdefault(mode, []).append(info["fsync_seconds"] / seconds)
                        prev = rss.get(mode)
                        if prev is None or info["rss_peak"] > prev["rss_peak"]:
                            rss[mode] = info
                    got = sum(p.stat().st_size for p in dest.iterdir())
                    if got != total:
                        raise RuntimeError(f"{tool} {mode}: got {got} bytes, expected {total}")
                    rates.setdefault((mode, tool), []).append(total / 1e6 / seconds)
                    if tool in ("curl", "curl_sha256sum"):
                        whole.setdefault((mode, tool), []).append(total / 1e6 / seconds)
                    cpus.setdefault((mode, tool), []).append(cpu / (total / 1e9))

        # Memory must not grow with file size: fetch one file 4x as large and compare.
        shutil.rmtree(work / "dest", ignore_errors=True)
        (work / "dest").mkdir()
        for name, _ in files:
            (served / name).unlink()
        big = make_files(served, 1, 4 * size)
        os.sync()
        big_info = time_ours([f"http://127.0.0.1:{port}/{big[0][0]}"], [big[0][1]], work / "dest", 1, work, fsync=True)

        print(f"\nfetch benchmark: {args.files} files x {args.size_mb} MiB from a loopback HTTP server, "
              f"parallel={args.parallel}, median of {args.rounds} round(s)")
        print(f"{'mode':<11} {'curl MB/s':>10} {'ours MB/s':>10} {'ours/curl':>10} {'(no fsync)':>11} "
              f"{'ours/curl':>10} {'fsync share':>12} {'peak RSS':>10} {'RSS growth':>11}")
        for mode in ("sequential", "parallel"):
            curl = statistics.median(rates[(mode, "curl")])
            ours = statistics.median(rates[(mode, "ours")])
            nofsync = statistics.median(rates[(mode, "ours_nofsync")])
            info = rss[mode]
            print(f"{mode:<11} {curl:>10.0f} {ours:>10.0f} {ours / curl:>10.2f} {nofsync:>11.0f} "
                  f"{nofsync / curl:>10.2f} {100 * statistics.median(fsyncs[mode]):>11.0f}% "
                  f"{info['rss_peak'] / 2**20:>6.0f} MiB {(info['rss_peak'] - info['rss_before']) / 2**20:>7.1f} MiB")
        print(f"{'CPU s/GB':<11} " + "  ".join(
            f"{mode}: curl {statistics.median(cpus[(mode, 'curl')]):.2f}, ours {statistics.median(cpus[(mode, 'ours')]):.2f}"
            for mode in ("sequential", "parallel")) + f"   (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print("whole process (interpreter start-up and imports included, as for curl), MB/s: " + "; ".join(
            f"{mode}: curl {statistics.median(whole[(mode, 'curl')]):.0f}, "
            f"ours {statistics.median(whole[(mode, 'ours')]):.0f} "
            f"(ratio {statistics.median(whole[(mode, 'ours')]) / statistics.median(whole[(mode, 'curl')]):.2f}), "
            f"no fsync {statistics.median(whole[(mode, 'ours_nofsync')]):.0f} "
            f"(ratio {statistics.median(whole[(mode, 'ours_nofsync')]) / statistics.median(whole[(mode, 'curl')]):.2f}), "
            f"curl then sha256sum {statistics.median(whole[(mode, 'curl_sha256sum')]):.0f}"
            for mode in ("sequential", "parallel")))
        growth = (big_info["rss_peak"] - big_info["rss_before"]) / 2**20
        print(f"memory: one {4 * args.size_mb} MiB file grew our RSS by {growth:.1f} MiB "
              f"(sequential {args.size_mb} MiB files: "
              f"{(rss['sequential']['rss_peak'] - rss['sequential']['rss_before']) / 2**20:.1f} MiB)")
        print("ours = default settings (sha256 verified, fsync before rename); curl = bare download, "
              "no checksum, no fsync")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--ours":
        run_ours(sys.argv[2])
    else:
        sys.exit(main())
