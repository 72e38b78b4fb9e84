"""What the benchmarks share: the ``RESULT`` line, the machine line, free ports, SIPp processes
and per-process readings from /proc.

Every benchmark that has a peer measures it in the same run and ends with one or more lines

    RESULT <bench> | ours <value> <unit> | peer <name> <value> <unit> | ratio <x> | <direction>

where ``ratio`` is always ours / peer in the line's unit and ``direction`` says which way is
better (``higher is better`` for a rate, ``lower is better`` for a latency, a CPU share or a
size). ``bench/run_all.py`` collects these lines into its summary table.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BENCH_DIR = Path(__file__).resolve().parent
SIPP_DIR = BENCH_DIR / "sipp"
RESULT = "RESULT"
Better = Literal["higher", "lower"]


def fmt(value: float) -> str:
    """A number with as many digits as a benchmark table wants."""
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def result(bench: str, ours: float, unit: str, peer_name: str, peer: float, *,
           better: Better, ours_note: str = "", peer_note: str = "") -> float:
    """Print the ``RESULT`` line of ``bench`` (ratio = ours / peer) and return the ratio.

    ``ours_note`` / ``peer_note`` follow the value in brackets (e.g. the p99 beside a p50)."""
    ratio = ours / peer if peer else float("inf")
    ours_text = f"{fmt(ours)} {unit}" + (f" ({ours_note})" if ours_note else "")
    peer_text = f"{fmt(peer)} {unit}" + (f" ({peer_note})" if peer_note else "")
    print(f"{RESULT} {bench} | ours {ours_text} | peer {peer_name} {peer_text} | "
          f"ratio {ratio:.2f} | {better} is better", flush=True)
    return ratio


def machine() -> str:
    """One line naming the machine: CPUs, model, Python."""
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} vCPU {model}, Python {platform.python_version()}"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_ports(count: int, *, spacing: int = 1) -> list[int]:
    """``count`` free UDP ports, each with ``spacing - 1`` free ports after it (SIPp uses the
    media port + 2 for video)."""
    found: list[int] = []
    while len(found) < count:
        base = free_udp_port()
        if all(_udp_free(base + i) for i in range(1, spacing)) and base + spacing < 65535:
            found.append(base)
    return found


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- /proc -----------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far: how busy the shared machine was."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


@dataclass
class CpuMeter:
    """CPU of some processes and of the whole machine over a window (``start``/``stop``)."""

    pids: dict[str, int]
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    busy: float = 0.0  # share of all CPUs busy, anyone's

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._ticks = machine_busy_ticks()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._t0
        self.after = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        busy, total = machine_busy_ticks()
        self.busy = (busy - self._ticks[0]) / max(1, total - self._ticks[1])

    def share(self, name: str) -> float:
        """CPU of ``name`` in the window, as a share of one core."""
        return (self.after[name] - self.before[name]) / self.wall if self.wall else 0.0

    def others(self) -> float:
        """CPU of every process not metered, as a share of one core."""
        cores = os.cpu_count() or 1
        return max(0.0, self.busy * cores - sum(self.share(n) for n in self.pids))


# -- SIPp ------------------------------------------------------------------------------------------

def require_sipp() -> None:
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (make setup installs Debian's sip-tester)")


def scenario_file(name: str, workdir: Path, **values: str) -> Path:
    """Copy bench/sipp/``name`` into ``workdir``, replacing ``{{key}}`` with ``values`` (SIPp
    does not substitute ``-key`` values inside action attributes such as ``rtp_stream``)."""
    text = (SIPP_DIR / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    path = workdir / name
    path.write_text(text)
    return path


@dataclass
class Sipp:
    """One SIPp process (``-nostdin``, output to files in ``workdir``)."""

    process: subprocess.Popen[bytes]
    workdir: Path
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def wait_rusage(self, timeout: float) -> tuple[int, float, float]:
        """Wait for the exit; (exit status, CPU seconds it used, seconds waited). The CPU
        comes from wait4(2), the one reading left once a process is gone."""
        start = time.monotonic()
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                self.process.returncode = code
                return code, usage.ru_utime + usage.ru_stime, time.monotonic() - start
            if time.monotonic() - start > timeout:
                self.stop()
                raise TimeoutError(f"sipp (pid {self.pid}) did not finish in {timeout:g} s")
            time.sleep(0.002)  # polling a child's exit, bounded by the timeout

    def stop(self) -> None:
        """End it (SIGUSR1 is SIPp's soft exit; SIGTERM after a second, SIGKILL after two)."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGUSR1)
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(2.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:]
                         for p in self.workdir.glob("*errors.log"))

    def stat_rows(self) -> list[dict[str, str]]:
        """Rows of the ``-trace_stat`` CSV so far (empty when it was not asked for)."""
        rows: list[dict[str, str]] = []
        for path in self.workdir.glob("*_.csv"):
            lines = path.read_text(errors="replace").splitlines()
            if len(lines) < 2:
                continue
            header = lines[0].rstrip(";").split(";")
            rows += [dict(zip(header, line.rstrip(";").split(";"), strict=False))
                     for line in lines[1:]]
        return rows


def start_sipp(args: Sequence[str], workdir: Path, port: int, *,
               ready_timeout: float = 5.0) -> Sipp:
    """Start ``sipp`` with ``args`` (``-i 127.0.0.1 -p port`` added) in ``workdir``; return once
    it holds its SIP port."""
    require_sipp()
    command = ["sipp", "-i", "127.0.0.1", "-p", str(port), "-nostdin", *args]
    process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sipp = Sipp(process, workdir, port)
    deadline = time.monotonic() + ready_timeout
    while _udp_free(port):
        if process.poll() is not None:
            raise RuntimeError(f"sipp exited with {process.returncode}: {' '.join(command)}\n"
                               f"{sipp.errors()}")
        if time.monotonic() > deadline:
            sipp.stop()
            raise RuntimeError(f"sipp did not bind port {port}: {' '.join(command)}")
        time.sleep(0.01)  # polling a child's bind, bounded by the deadline
    return sipp


@contextlib.contextmanager
def running_sipp(args: Sequence[str], workdir: Path, port: int) -> Iterator[Sipp]:
    sipp = start_sipp(args, workdir, port)
    try:
        yield sipp
    finally:
        sipp.stop()


def ulaw_tone_file(path: Path, seconds: float = 3.0) -> Path:
    """A headerless G.711 μ-law file of a 440 Hz tone at -12 dBFS, for SIPp's ``rtp_stream``
    (the same kind of audio the engine's benches play)."""
    import numpy as np

    from ars_engine.media.audio import ulaw_encode

    n = int(8000 * seconds)
    pcm = (np.sin(np.arange(n) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    path.write_bytes(ulaw_encode(pcm))
    return path


def percentiles(values: Sequence[float] | object, points: Sequence[float] = (50, 99)
                ) -> list[float]:
    """Percentiles of ``values`` (NaN for none)."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    if not array.size:
        return [float("nan")] * len(points)
    return [float(v) for v in np.percentile(array, list(points))]
