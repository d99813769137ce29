"""Outages during a live replay, one at a time, and what survives each: nothing lost, nothing twice.

    python -m benchmarks.faults [--faults worker,postgres,kafka,redis] [--devices 9] [--duration 40]
                                [--speed 2] [--json]

For each fault: a fresh set of topics, consumer group and database; two `iotlm worker` processes;
HAPT subjects replayed as live devices; the fault injected a third of the way into the replay:
- worker: one worker SIGKILLed mid-stream, restarted a second later;
- postgres: the database stopped for 11 s, then started again;
- kafka: the broker SIGKILLed (no controlled shutdown), then started again;
- redis: Redis stopped for 12 s, then started again (the workers must keep storing meanwhile).
Then it waits for the stream to be written and counts, per fault: frames in (acknowledged by Kafka),
windows expected (what the window assembler makes of exactly those frames), rows stored, duplicates
(rows beyond one per window) and lost (expected windows with no row).

Runs on a stack of its own (state dir `.state/faults`, every port +5000), so a demo or a test session
is never disturbed. Writes benchmarks/results/faults.json with the machine description.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time

from iotlm.settings import PROJECT_ROOT, Settings
from iotlm.credentials import postgres_connect_kwargs

FAULTS = ("worker", "postgres", "kafka", "redis")
PORT_OFFSET = 5000
OUTAGE_S = {"postgres": 11.0, "redis": 12.0}


def fault_stack_settings() -> Settings:
    """A stack of its own, with the settings-based admission: the replayed subjects are not in a registry."""
    base = Settings(state_dir=PROJECT_ROOT / ".state" / "faults")
    return base.model_copy(update={"stack": base.stack.with_ports_moved(PORT_OFFSET),
                                   "ingest": base.ingest.model_copy(update={"admission": "settings"})})


class Workers:
    """`iotlm worker` processes of one run, logs in the state dir."""

    def __init__(self, settings: Settings, count: int = 2):
        self.settings = settings
        self.env = settings.environ()
        self.logs = settings.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs = [self._start(i) for i in range(count)]

    def _start(self, index: int) -> subprocess.Popen:
        log = open(self.logs / f"fault-worker-{index}-{time.monotonic_ns()}.log", "wb")
        return subprocess.Popen([sys.executable, "-m", "iotlm", "worker", "--index", str(index)],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill_and_restart(self, index: int) -> None:
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait()
        time.sleep(1.0)
        self.procs[index] = self._start(index)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> list[int | None]:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes


def inject(fault: str, stack, workers: Workers, console) -> None:
    """The outage itself, on the real processes."""
    if fault == "worker":
        workers.kill_and_restart(1)
    elif fault == "kafka":
        broker = stack.services["kafka"]
        record = broker.process.request_stop(signal.SIGKILL)
        if record is not None:
            broker.process.await_stop(record, 30)
        stack.up(["kafka"])
    else:
        stack.down(only=[fault])
        time.sleep(OUTAGE_S[fault])
        stack.up([fault])
    console.print(f"  {fault}: back")


def expected_windows(settings: Settings, frames) -> set[tuple[str, float]]:
    from stream_workers.app import segment_from_frame
    from stream_workers.windows import WindowAssembler

    assembler = WindowAssembler.from_settings(settings.workers, 25.0)
    keys = set()
    for offset, (frame, truth) in enumerate(frames):
        segment = segment_from_frame(frame, truth.labels if truth else None, 0, offset, 0.0)
        keys |= {(w.device_id, round(w.start, 3)) for w in assembler.add(segment).windows}
    return keys


def stored_windows(settings: Settings, device_ids: list[str]) -> list[tuple[str, float]]:
    import psycopg

    with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
        rows = conn.execute("SELECT device_id, window_start FROM window_predictions WHERE device_id = ANY(%s)",
                            (device_ids,)).fetchall()
    return [(device, round(start.timestamp(), 3)) for device, start in rows]


def run_fault(fault: str, settings: Settings, stack, devices: int, duration_s: float, speed: float, console) -> dict:
    from benchmarks.bench_pipeline import private_run
    from ingest.simulate import hapt_devices, replay_hapt

    hop = settings.workers.hop_s
    with private_run(settings) as run:
        run = run.model_copy(update={"workers": run.workers.model_copy(update={
            "metrics_port": settings.workers.metrics_port + PORT_OFFSET})})
        from deploy.topics import ensure_topics

        ensure_topics(run)
        workers = Workers(run)
        start = time.time() // hop * hop
        summary: dict = {}
        replay = threading.Thread(target=lambda: summary.update(r=replay_hapt(
            run, devices=devices, speed=speed, duration_s=duration_s, start_time=start, progress=False)))
        time.sleep(8.0)  # the workers join the group and load the model
        replay.start()
        time.sleep(duration_s / speed / 3)
        console.print(f"  {fault}: injecting")
        injected_at = time.time()
        inject(fault, stack, workers, console)
        replay.join()
        sent = summary["r"]
        signals = dict(hapt_devices(devices))
        frames = []
        for d in sent.devices:
            frames += [signals[d.device_id].frame(d.device_id, seq, start + seq, 1.0) for seq in range(d.frames)]
        expected = expected_windows(run, frames)
        ids = [d.device_id for d in sent.devices]
        deadline = time.monotonic() + 180
        while len(set(stored_windows(run, ids))) < len(expected) and time.monotonic() < deadline:
            time.sleep(1.0)
        time.sleep(3.0)  # a late duplicate would land now
        stored = stored_windows(run, ids)
        alive = workers.alive()
        codes = workers.stop()
    result = {
        "fault": fault, "frames_in": sent.frames, "windows_expected": len(expected), "rows": len(stored),
        "duplicates": len(stored) - len(set(stored)), "lost": len(expected - set(stored)),
        "unexpected_rows": len(set(stored) - expected), "workers_alive_at_end": alive, "worker_exit_codes": codes,
        "recovered_within_s": round(time.time() - injected_at, 1),
    }
    console.print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--devices", type=int, default=9)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of signal per device")
    parser.add_argument("--speed", type=float, default=2.0, help="event time this many times real time")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")

    from rich.console import Console
    from rich.table import Table

    from benchmarks.machine import write_result
    from deploy.stack import Stack

    console = Console(stderr=True)
    settings = fault_stack_settings()
    stack = Stack(settings)
    results = []
    with stack.leased():
        for fault in faults:
            console.rule(f"fault: {fault}")
            results.append(run_fault(fault, settings, stack, args.devices, args.duration, args.speed, console))
    table = Table("fault", "frames in", "windows expected", "rows", "duplicates", "lost", "workers up")
    for r in results:
        table.add_row(r["fault"], str(r["frames_in"]), str(r["windows_expected"]), str(r["rows"]),
                      str(r["duplicates"]), str(r["lost"]), str(r["workers_alive_at_end"]))
    console.print(table)
    report = {"devices": args.devices, "duration_s": args.duration, "speed": args.speed, "faults": results}
    path = write_result("faults", report)
    console.print(f"-> {path}")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
