"""Prometheus metrics of one worker, served on settings.workers.metrics_port + worker index.

Each worker owns a registry (not the process-global one), so several workers in one process (tests,
the demo) do not collide. Rates (frames/s, windows/s) are `rate()` over the counters in Prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WorkerMetrics:
    def __init__(self, worker: str):
        self.registry = CollectorRegistry()
        labels = {"worker": worker}
        r = self.registry
        self.frames = Counter("iotlm_worker_frames", "Frames consumed", ["worker"], registry=r).labels(**labels)
        self.windows = Counter("iotlm_worker_windows", "Windows emitted for inference", ["worker"], registry=r).labels(**labels)
        self.results = Counter("iotlm_worker_results", "Results durably written", ["worker"], registry=r).labels(**labels)
        self.dlq = Counter("iotlm_worker_dlq", "Records sent to the dead-letter topic", ["worker", "code"], registry=r)
        self.late_frames = Counter("iotlm_worker_late_frames", "Frames later than the lateness bound", ["worker"], registry=r).labels(**labels)
        self.duplicate_frames = Counter("iotlm_worker_duplicate_frames", "Duplicate frames dropped", ["worker"], registry=r).labels(**labels)
        self.gap_windows = Counter("iotlm_worker_gap_windows", "Windows not emitted: sample gap", ["worker"], registry=r).labels(**labels)
        self.alerts = Counter("iotlm_worker_alerts", "Alerts raised", ["worker", "rule"], registry=r)
        self.batch_size = Histogram("iotlm_worker_batch_size", "Windows per inference batch", ["worker"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r).labels(**labels)
        self.inference_seconds = Histogram("iotlm_worker_inference_seconds", "Inference time per batch", ["worker"],
                                           buckets=LATENCY_BUCKETS, registry=r).labels(**labels)
        self.end_to_end_seconds = Histogram("iotlm_worker_end_to_end_seconds",
                                            "Frame on Kafka -> result written, per window", ["worker"],
                                            buckets=LATENCY_BUCKETS, registry=r).labels(**labels)
        self.consumer_lag = Gauge("iotlm_worker_consumer_lag", "Records behind the partition end", ["worker"], registry=r).labels(**labels)
        self.assigned_partitions = Gauge("iotlm_worker_assigned_partitions", "Frames partitions owned now", ["worker"], registry=r).labels(**labels)
        self.pending_windows = Gauge("iotlm_worker_pending_windows", "Windows queued or computing", ["worker"], registry=r).labels(**labels)
        self._worker = worker
        self._server = None

    def dead_lettered(self, code: str) -> None:
        self.dlq.labels(worker=self._worker, code=code).inc()

    def alerted(self, rule: str) -> None:
        self.alerts.labels(worker=self._worker, rule=rule).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        """Free the port (a worker stopped; another may start in this process)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
