"""The fine-tuning loop: labeled stream data -> a candidate model -> promoted to the live workers.

- `registry`: model versions (lineage, training data, files and hashes, status) and promotion, which
  reaches every worker through the hot-reload key (`settings.workers.model_key`);
- `jobs`: the job queue in `finetune_jobs` (claimed with SKIP LOCKED, heartbeats, cancel, resume);
- `dataset`: labeled windows from `raw_frames`, windowed by the workers' own `WindowAssembler`, and the
  train/validation/test split by device or time block;
- `decision`: the promotion rule (a one-sided exact McNemar test on the paired held-out windows);
- `runner`: the job runner behind `iotlm jobs run`; `cli`: `iotlm jobs run|watch|show`.

Above storage, stream_workers and models on the data's path; the admin API imports it, never the reverse.
"""
