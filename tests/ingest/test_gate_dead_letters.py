"""The ingest gate: a corpus of bad payloads, each dead-lettered with its own reason, between
valid frames that all arrive."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest

from ingest.codec import decode, encode, header
from ingest.dead_letters import read_dead_letters
from ingest.frame import Frame, ImuStream
from ingest.gate import IngestGate, SettingsAdmission
from ingest.producer import DeviceProducer
from iotlm.settings import IngestSettings

pytestmark = pytest.mark.services


def valid_frame(device_id: str, seq: int) -> Frame:
    rng = np.random.default_rng(seq)
    return Frame(device_id=device_id, seq=seq, t0=time.time(), duration_s=1.0, placement="wrist",
                 imu=ImuStream(50.0, rng.normal(size=(50, 3)), rng.normal(size=(50, 3))))


def json_doc(**changes) -> dict:
    return json.loads(encode(valid_frame("dev-json", 0), "json")) | changes


def malformed_corpus(max_frame_bytes: int) -> dict[str, bytes]:
    good = encode(valid_frame("dev-bad", 0), "msgpack")
    doc = json_doc()
    nan_acc = [row[:] for row in doc["imu"]["acc"]]
    nan_acc[3][2] = float("nan")
    inf_gyro = [row[:] for row in doc["imu"]["gyro"]]
    inf_gyro[9][0] = float("inf")
    return {
        "truncated binary": good[: len(good) // 2],
        "wrong type": json.dumps(json_doc(seq="seven")).encode(),
        "NaN": json.dumps(json_doc(imu=doc["imu"] | {"acc": nan_acc})).encode(),
        "inf": json.dumps(json_doc(imu=doc["imu"] | {"gyro": inf_gyro})).encode(),
        "length vs rate": json.dumps(json_doc(imu=doc["imu"] | {"rate_hz": 100})).encode(),
        "unknown schema": json.dumps(json_doc(schema_version=2)).encode(),
        "unknown device": encode(valid_frame("rogue-7", 0), "msgpack"),
        "10 MB payload": b"{" + b" " * (10 * 1024 * 1024) + b"}",
        "empty object at the size limit": b"{" + b" " * (max_frame_bytes - 2) + b"}",  # kept whole in the DLQ
        "non-UTF-8 JSON": json.dumps(json_doc(device_id="dev-X")).encode().replace(b"dev-X", b"dev-\xff"),
        "not a frame": b"\x00\x01\x02 hello",
        "missing field": json.dumps({k: v for k, v in json_doc().items() if k != "t0"}).encode(),
        "msgpack map, not a frame": msgpack.packb({"schema_version": 1, "device_id": 5}),
    }


def test_malformed_corpus_is_dead_lettered_with_distinct_reasons(topic_settings, read_topic):
    corpus = malformed_corpus(topic_settings.kafka.max_frame_bytes)
    sent_valid = []
    with DeviceProducer(topic_settings) as producer:
        gate = IngestGate(topic_settings, producer)
        for i, (name, raw) in enumerate(corpus.items()):
            fmt = "json" if i % 2 else "msgpack"
            frame = valid_frame(f"dev-ok-{i % 3}", i)
            assert gate.admit(encode(frame, fmt), "test").accepted
            sent_valid.append(frame)
            decision = gate.admit(raw, f"test:{name}")
            assert not decision.accepted, name
    assert gate.outcomes["accepted"] == len(corpus)

    dead = read_topic(topic_settings, topic_settings.kafka.dlq_topic, expected=len(corpus))
    assert len(dead) == len(corpus)
    by_name = {header(r.headers, "source").decode().removeprefix("test:"): r for r in dead}
    assert set(by_name) == set(corpus)
    reasons = {name: header(r.headers, "reason").decode() for name, r in by_name.items()}
    assert len(set(reasons.values())) == len(corpus), reasons
    codes = {name: header(r.headers, "code").decode() for name, r in by_name.items()}
    assert codes["truncated binary"] == "truncated" and codes["10 MB payload"] == "oversized"
    assert codes["NaN"] == codes["inf"] == "non_finite"
    assert "imu.acc has NaN at sample 3, axis z" in reasons["NaN"]
    assert "imu.gyro has +inf at sample 9, axis x" in reasons["inf"]
    assert "needs 100" in reasons["length vs rate"]
    assert reasons["unknown device"].startswith("unknown device 'rogue-7'")
    assert "not valid UTF-8" in reasons["non-UTF-8 JSON"]
    for name, record in by_name.items():
        assert float(header(record.headers, "received_at")) > 1.7e9
        if name == "10 MB payload":  # too big to keep whole: prefix + identity of the original
            raw = corpus[name]
            assert record.value == raw[: topic_settings.kafka.dlq_keep_bytes]
            assert header(record.headers, "original_size") == str(len(raw)).encode()
            assert header(record.headers, "original_sha256") == hashlib.sha256(raw).hexdigest().encode()
        else:
            assert record.value == corpus[name], name  # the original bytes, untouched

    newest = read_dead_letters(topic_settings, last=3)
    assert [d.source for d in newest] == [f"test:{name}" for name in list(corpus)[-3:]]
    assert newest[-1].code == "wrong_type" and newest[-1].payload == corpus["msgpack map, not a frame"]
    assert newest[-1].reason == "device_id must be a string, got int 5"

    delivered = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=len(sent_valid))
    assert len(delivered) == len(sent_valid)
    got = {(f.device_id, f.seq): f for f in map(lambda r: decode(r.value), delivered)}
    for frame in sent_valid:
        back = got[(frame.device_id, frame.seq)]
        assert np.array_equal(back.imu.acc.view(np.uint32), frame.imu.acc.view(np.uint32))
    assert all(r.value[:1] != b"{" for r in delivered)  # forwarded re-encoded as binary


def test_send_and_dlq_commands(topic_settings, tmp_path):
    env = os.environ | topic_settings.stack.environ() | {
        "IOTLM_STATE_DIR": str(topic_settings.state_dir),  # where the stack wrote the credentials
        "IOTLM_KAFKA__FRAMES_TOPIC": topic_settings.kafka.frames_topic,
        "IOTLM_KAFKA__DLQ_TOPIC": topic_settings.kafka.dlq_topic,
    }
    iotlm = [sys.executable, "-m", "iotlm.cli"]
    frame_file = tmp_path / "frame.json"
    frame_file.write_bytes(encode(valid_frame("dev-cli", 1), "json"))
    ok = subprocess.run(iotlm + ["ingest", "send", str(frame_file), "--json"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"accepted": True, "device_id": "dev-cli", "code": None, "reason": None}

    refused = subprocess.run(iotlm + ["ingest", "send", "-", "--source", "shell", "--json"], input="25.3 C",
                             env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and json.loads(refused.stdout)["code"] == "unknown_format"

    shown = subprocess.run(iotlm + ["ingest", "dlq", "--last", "5", "--json"], env=env, capture_output=True, text=True)
    (letter,) = json.loads(shown.stdout)
    assert (letter["source"], letter["code"], letter["preview"], letter["size"]) == ("shell", "unknown_format", "25.3 C", 6)


def test_admission_by_registration_or_prefix():
    admission = SettingsAdmission(IngestSettings(registered_devices=["kitchen-co2"], allow_prefixes=["sim-"]))
    assert admission.refusal("kitchen-co2") is None and admission.refusal("sim-007") is None
    assert "not in settings.ingest.registered_devices" in admission.refusal("kitchen-co2-b")
