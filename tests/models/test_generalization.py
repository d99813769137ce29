"""Issue 12 pieces: one placement vocabulary, refused placements, the label-free gravity reference,
unseen wordings, the conditions table and `iotlm classify --input` with a `device` array."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.frame import PLACEMENTS as FRAME_PLACEMENTS
from ingest.frame import Frame, FrameError, ImuStream
from ingest.placements import ENCODER_PLACEMENTS, SERVED_PLACEMENTS, UNSERVED_PLACEMENTS
from iotlm.cli import app
from models.conditions import quarter_turns, random_rotations, run_conditions, training_vocabulary, unseen_wording_overlap
from models.encoder import PLACEMENTS as ENCODER_ROWS
from models.gravity import CANONICAL_UP, GRAVITY, GravityReference, align_to_reference, is_gait, rotation_between
from models.inference import MotionClassifier, UnservedPlacement

HAPT_LABELS = "walking,walking upstairs,walking downstairs,sitting,standing,lying down"


def gait_windows(up, n=8, t=128, rate=50.0, seed=0):
    """Walking-like windows of a device whose "up" is `up`: 1 g along it plus a 2 Hz bounce and sway."""
    rng = np.random.default_rng(seed)
    up = np.asarray(up, float) / np.linalg.norm(up)
    side = np.cross(up, [0.3, 0.5, 0.8])
    side /= np.linalg.norm(side)
    time = np.arange(t) / rate
    bounce = 2.5 * np.sin(2 * np.pi * 2.0 * time)[None, :, None] * up
    sway = 1.5 * np.sin(2 * np.pi * 1.0 * time)[None, :, None] * side
    acc = GRAVITY * up + bounce + sway + rng.normal(0, 0.2, (n, t, 3))
    return acc.astype(np.float32)


def still_windows(down_tilt, n=8, t=128, seed=1):
    rng = np.random.default_rng(seed)
    g = np.asarray(down_tilt, float) / np.linalg.norm(down_tilt)
    return (GRAVITY * g + rng.normal(0, 0.05, (n, t, 3))).astype(np.float32)


def test_one_placement_vocabulary():
    assert ENCODER_ROWS is ENCODER_PLACEMENTS  # the encoder's embedding rows come from ingest/placements.py
    assert set(FRAME_PLACEMENTS) == set(SERVED_PLACEMENTS) | {"unknown", "room"}
    assert set(UNSERVED_PLACEMENTS) == set(ENCODER_PLACEMENTS) - set(SERVED_PLACEMENTS) - {"unknown"}
    imu = ImuStream(50.0, np.zeros((50, 3), np.float32))
    assert Frame("d-1", 0, 1.7e9, 1.0, "head", imu=imu).placement == "head"
    with pytest.raises(FrameError) as refused:
        Frame("d-1", 0, 1.7e9, 1.0, "thigh", imu=imu)
    assert refused.value.code == "unknown_placement" and "never trained" in refused.value.reason


def test_untrained_placement_is_refused_with_its_reason():
    classifier = MotionClassifier.load("motion-v1", device="cpu")
    acc = still_windows([1, 0, 0], n=2)
    assert classifier.predict_proba(acc, None, 50.0, ["sitting", "walking"], "pocket").shape == (2, 2)
    for placement in ("thigh", "upper_arm", "back", "hand"):
        with pytest.raises(UnservedPlacement, match="never trained"):
            classifier.predict_proba(acc, None, 50.0, ["sitting", "walking"], placement)
    result = CliRunner().invoke(app, ["classify", "--input", str(_npz(acc)), "--labels", "a,b", "--placement", "thigh"])
    assert result.exit_code == 2 and "never trained" in " ".join(result.output.replace("│", " ").split())


def _npz(acc, path=None, **extra):
    import tempfile
    from pathlib import Path

    path = path or Path(tempfile.mkdtemp()) / "w.npz"
    np.savez(path, acc=acc, sample_rate=50.0, **extra)
    return path


def test_gravity_reference_finds_up_from_gait_only():
    up = np.array([0.2, -0.9, 0.4])
    up /= np.linalg.norm(up)
    ref = GravityReference()
    ref.update(still_windows([0.0, 0.3, 1.0]))  # sitting with another tilt first: not a reference
    assert ref.direction() is None and ref.direction(long_span=True) is not None
    walking = gait_windows(up)
    assert is_gait(walking).all() and not is_gait(still_windows([1, 0, 0])).any()
    ref.update(walking)
    assert np.degrees(np.arccos(ref.direction() @ up)) < 3
    again = GravityReference.from_dict(json.loads(json.dumps(ref.to_dict())))  # the workers' durable state
    assert np.allclose(again.direction(), ref.direction())


def test_alignment_turns_the_reference_onto_the_trained_up():
    rng = np.random.default_rng(3)
    for a in list(rng.normal(size=(5, 3))) + [-CANONICAL_UP]:
        r = rotation_between(a, CANONICAL_UP)
        assert np.allclose(r @ (a / np.linalg.norm(a)), CANONICAL_UP, atol=1e-9) and np.isclose(np.linalg.det(r), 1)
    up = np.array([0.0, 0.0, 1.0])
    acc = gait_windows(up, n=3)
    turned, gyro = align_to_reference(acc, acc.copy(), up)
    mean = turned.mean((0, 1))
    assert np.degrees(np.arccos(mean @ CANONICAL_UP / np.linalg.norm(mean))) < 3 and np.allclose(gyro, turned)


def test_mounting_rotations_are_rotations():
    rng = np.random.default_rng(0)
    for r in np.concatenate([random_rotations(20, rng), quarter_turns(20, rng)]):
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(r), 1)
    quarter = quarter_turns(50, rng)
    assert np.allclose(np.trace(quarter, axis1=1, axis2=2), 1)  # 1 + 2 cos(90 degrees)


def test_unseen_wordings_share_no_content_word_with_training_text():
    vocabulary = training_vocabulary()
    assert {"walking", "sitting", "stairs", "lying", "person"} <= vocabulary  # the check has teeth
    overlap = unseen_wording_overlap()
    assert len(overlap) >= 12 and not any(overlap.values()), {w: s for w, s in overlap.items() if s}


def test_conditions_table_rows(tmp_path):
    wanted = {"told", "told_adaptive", "mount_subject", "mount_subject_adaptive", "wording_a", "hint_thigh",
              "rate_10hz", "finetuned_no_gyro"}
    report = run_conditions("motion-v1", datasets=("hapt",), only=wanted, limit=60, out_dir=tmp_path)
    rows = {r["condition"]: r for r in report["rows"]}
    assert set(rows) == wanted and "never trained" in rows["hint_thigh"]["refused"]
    assert all(0 <= r["accuracy"] <= 1 for c, r in rows.items() if c != "hint_thigh")
    assert rows["finetuned_no_gyro"]["model"].startswith("motion-v1-hapt")
    assert "| hapt | `rate_10hz` |" in (tmp_path / f"conditions-{report['model_version']}.md").read_text()


def test_classify_with_a_device_array(tmp_path):
    """Two devices worn differently; the reference is estimated per device, and files without
    `device` still work."""
    acc = np.concatenate([gait_windows([0, 0, 1], n=4), gait_windows([0, 1, 0], n=4, seed=2)])
    devices = np.array(["a"] * 4 + ["b"] * 4)
    runner = CliRunner()
    base = ["classify", "--labels", HAPT_LABELS, "--placement", "waist", "--json"]
    out = runner.invoke(app, base + ["--input", str(_npz(acc, tmp_path / "d.npz", device=devices))])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    references = result["gravity_reference"]
    assert np.allclose(references["a"]["up"], [0, 0, 1], atol=0.03) and np.allclose(references["b"]["up"], [0, 1, 0], atol=0.03)
    assert len(result["predictions"]) == 8
    plain = runner.invoke(app, base + ["--input", str(_npz(acc, tmp_path / "p.npz"))])
    assert plain.exit_code == 0 and "gravity_reference" not in plain.output
    bad = runner.invoke(app, base + ["--input", str(_npz(acc, tmp_path / "b.npz", device=np.zeros(3)))])
    flat = " ".join(bad.output.replace("│", " ").split())  # rich wraps the error box by terminal width
    assert bad.exit_code == 2 and "device must be (8,)" in flat


def test_gravity_inputs_are_config_driven_and_turn_with_the_device(tmp_path):
    """motion-v2's architecture (gravity reference + gravity-removed flag as 4 more channels) is a config
    switch: a checkpoint with it round-trips, and rotation augmentation turns the reference with acc."""
    import torch

    from models.augment import rotate
    from models.encoder import ContrastiveMotionModel, MotionEncoderConfig, prepare_motion
    from models.inference import save_checkpoint

    config = MotionEncoderConfig(d_model=32, n_layers=1, n_heads=2, gravity_inputs=True)
    acc = gait_windows([0, 0, 1], n=2)
    linear = acc - acc.mean(1, keepdims=True)  # a device that removes gravity itself
    signal, _, _ = prepare_motion(np.concatenate([acc, linear]), None, 50.0, config, up=np.array([0.0, 0.0, 2.0]))
    assert signal.shape == (4, 64, 10)
    assert torch.allclose(signal[:, 0, 6:9], torch.tensor([0.0, 0.0, 1.0]).expand(4, 3))  # unit reference
    assert signal[:, 0, 9].tolist() == [0.0, 0.0, 1.0, 1.0]  # gravity-removed windows detected
    unknown, _, _ = prepare_motion(acc, None, 50.0, config)
    assert (unknown[..., 6:9] == 0).all()  # no reference: zeros
    quarter = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    turned = rotate(signal[:1], quarter)
    assert torch.allclose(turned[..., 6:9], signal[:1, :, 6:9] @ quarter[0].T) and torch.equal(turned[..., 9], signal[:1, :, 9])
    model = ContrastiveMotionModel(config)
    save_checkpoint(model, tmp_path / "v2", {"version": "tiny-v2", "default_labels": ["walking"],
                                             "served_placements": ["waist", "hand"]}, {})
    loaded = MotionClassifier.load(tmp_path / "v2", device="cpu")
    assert loaded.gravity_inputs and loaded.model.encoder.stem.conv1.in_channels == 10
    embedded = loaded.embed(acc, None, 50.0, "hand", up=np.array([0.0, 0.0, 1.0]))
    assert embedded.shape == (2, 384) and not np.allclose(embedded, loaded.embed(acc, None, 50.0, "hand"))
    with pytest.raises(UnservedPlacement):
        loaded.embed(acc, None, 50.0, "wrist")  # served placements come from the checkpoint


def test_full_shot_over_seeds_reports_spread_baseline_and_both_settings():
    """Tiny split, one epoch: per-seed runs of the shipped recipe, mean and std, the baseline of the same run,
    a fusion weight chosen from the grid on validation, single-window and per-device rows apart."""
    from models.fullshot import VARIANTS, run_full_shot
    from models.fusion import WEIGHTS

    report = run_full_shot("motion-v1", seeds=(0, 1), epochs=1, limit=60)
    assert [r["seed"] for r in report["runs"]] == [0, 1] and report["recipe"]["reference"]
    for variant in VARIANTS:
        accuracy = report[variant]["accuracy"]
        assert len(accuracy["values"]) == 2 and np.isclose(accuracy["mean"], np.mean(accuracy["values"]))
        assert np.isclose(accuracy["std"], np.std(accuracy["values"], ddof=1))
        assert 0 <= report["seed_ensemble"][variant]["accuracy"] <= 1
    assert all(r["fusion_weight"] in WEIGHTS and len(r["validation_macro_f1_by_weight"]) == len(WEIGHTS)
               for r in report["runs"])
    assert 0 <= report["baseline"]["accuracy"] <= 1 and report["baseline"]["c"] > 0
    assert report["n_windows"]["test"] == 60


def test_grounding_pulls_a_vector_onto_its_nearest_concepts_and_leaves_weight_zero_alone():
    from models.text import ground_in_concepts

    rng = np.random.default_rng(0)
    concepts = rng.normal(size=(5, 384)).astype(np.float32)
    concepts /= np.linalg.norm(concepts, axis=1, keepdims=True)
    label = concepts[2] + 0.3 * concepts[4]
    label = (label / np.linalg.norm(label))[None]
    assert np.array_equal(ground_in_concepts(label, concepts, 0.05, 0.0), label)
    pulled = ground_in_concepts(label, concepts, 0.01, 1.0)  # a sharp softmax: the nearest concept itself
    assert np.allclose(pulled[0], concepts[2], atol=1e-3)
    half = ground_in_concepts(label, concepts, 0.05, 0.5)
    assert np.isclose(np.linalg.norm(half), 1.0) and half[0] @ concepts[2] > label[0] @ concepts[2]


def test_grounding_changes_only_wordings_the_encoder_never_saw():
    classifier = MotionClassifier.load("motion-v1", device="cpu")
    known, unseen = ["walking", "sitting"], ["pacing about"]
    classifier.grounding = (0.05, 0.0)
    raw = classifier.label_vectors(known + unseen).numpy()
    classifier.grounding = (0.05, 0.5)
    grounded = classifier.label_vectors(known + unseen).numpy()
    assert np.array_equal(raw[:2], grounded[:2])  # trained names keep their own vectors
    assert not np.allclose(raw[2], grounded[2]) and np.isclose(np.linalg.norm(grounded[2]), 1.0, atol=1e-5)


def test_reference_validation_reads_train_subjects_only_and_never_means_no_reference():
    """The online-reference check (iotlm eval --setting reference-validation): per threshold and condition an
    accuracy; 'never' is the classifier without a reference; test subjects are refused."""
    from ingest.hapt import load_hapt
    from models.conditions import reference_validation
    from models.datasets import HAPT_LABELS

    report = reference_validation("motion-v1", thresholds=(3, 1000), first_s=60.0, subjects=(1,))
    rows = report["accuracy_by_min_gait_windows"]
    assert set(rows) == {"as_worn", "mounted"} and set(rows["as_worn"]) == {"3", "1000", "never"}
    assert report["chosen"] in ("3", "1000") and report["subjects"] == [1]
    # a threshold no minute of walking reaches behaves as no reference at all
    assert rows["as_worn"]["1000"] == rows["as_worn"]["never"] and rows["mounted"]["1000"] == rows["mounted"]["never"]
    classifier, hits = MotionClassifier.load("motion-v1", device="cpu"), []
    for recording in load_hapt([1]):  # each of the subject's recordings is a stream from its start
        labels = np.clip(recording.labels[:3000].astype(int), 0, None)
        starts = [i for i in range(0, 3000 - 127, 64) if np.isin(labels[i:i + 128], range(1, 7)).all()]
        truth = [np.bincount(labels[i:i + 128], minlength=7)[1:7].argmax() for i in starts]
        p = classifier.predict_proba(np.stack([recording.acc[i:i + 128] for i in starts]),
                                     np.stack([recording.gyro[i:i + 128] for i in starts]), recording.rate_hz,
                                     list(HAPT_LABELS), "waist")
        hits += list(p.argmax(1) == np.array(truth))
    assert np.isclose(rows["as_worn"]["never"], np.mean(hits))
    with pytest.raises(AssertionError):
        reference_validation("motion-v1", subjects=(2,))  # a test subject
