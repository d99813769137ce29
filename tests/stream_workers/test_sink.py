"""SinkBatch: raw frames travel with the results and are split out like any other record."""

from __future__ import annotations

from stream_workers.records import RawFrame, WindowResult
from stream_workers.sink import SinkBatch


def _result(device: str) -> WindowResult:
    return WindowResult(device, 0.0, 2.56, "v1", "walking", 0.9, {"walking": 0.9, "sitting": 0.1})


class TestSinkBatch:
    def test_raw_frames_count_split_and_extend_like_the_other_records(self):
        raw = [RawFrame("dev-a", 100.0 + i, i, b"\x85frame", 100.0 + i, partition=0, offset=i) for i in range(3)]
        batch = SinkBatch(results=[_result("dev-a")], raw_frames=raw)

        assert len(batch) == 4
        singles = batch.split()
        assert [len(s) for s in singles] == [1, 1, 1, 1]
        assert [s.records()[0] for s in singles] == batch.records()
        merged = SinkBatch()
        for single in singles:
            merged.extend(single)
        assert merged == batch
