"""The IoT-LM adapter's mechanics on the real SmolLM2 backbone (loaded once for the module, ~20-30 s),
its instruction data's subject splits, the grounding arithmetic and the narration stage's bounded queue."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch

from models.llm.data import FIT_SUBJECTS, TEST_SUBJECTS, VALIDATION_SUBJECTS, answer_ids, examples, prompt_ids


@pytest.fixture(scope="module")
def backbone():
    from models.llm.backbone import load_backbone

    torch.set_num_threads(1)
    return load_backbone()


@pytest.fixture(scope="module")
def fresh(backbone):
    from models.llm.adapter import AdapterConfig, IoTLMAdapter

    torch.manual_seed(0)
    return IoTLMAdapter(AdapterConfig(modalities={"motion": {"feature_dim": 384}}), backbone)


def _sequence(backbone, answer="walking upstairs"):
    prompt = prompt_ids(backbone.tokenizer, "What is the person doing?")
    return prompt, prompt + answer_ids(backbone.tokenizer, answer, backbone.end_id)


def _features(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"motion": torch.nn.functional.normalize(torch.randn(batch, 5, 384, generator=g), dim=-1)}


def test_zero_gates_give_the_base_llms_logits(backbone, fresh):
    prompt, ids = _sequence(backbone)
    x = torch.tensor([ids])
    with torch.no_grad():
        base = backbone.model(x).logits
        fresh.set_prompts(_features(), torch.tensor([0]))
        adapted = fresh.llm(x).logits
        fresh.set_prompts(None, None)
    assert torch.equal(adapted, base)  # bit for bit: the gate multiplies the prompt's part by exactly 0


def test_open_gates_change_the_answer_and_the_cached_path_matches_the_full_forward(backbone, fresh):
    prompt, ids = _sequence(backbone)
    x = torch.tensor([ids])
    saved = [a.gate.detach().clone() for a in fresh.attentions]
    try:
        with torch.no_grad():
            for a in fresh.attentions:
                a.gate.fill_(0.7)
            fresh.set_prompts(_features(), torch.tensor([0]))
            full = torch.log_softmax(fresh.llm(x).logits[0], -1)
            cached = fresh.token_logprobs([ids], [len(prompt)])[0]
            base = torch.log_softmax(backbone.model(x).logits[0], -1)
            fresh.set_prompts(None, None)
        target = torch.tensor(ids[len(prompt):]).unsqueeze(1)
        expected = full[len(prompt) - 1 : len(ids) - 1].gather(1, target)[:, 0]
        assert torch.allclose(cached, expected, atol=1e-4)
        assert (full - base).abs().max() > 1e-2  # the sensor tokens now reach the answer
    finally:
        with torch.no_grad():
            for a, g in zip(fresh.attentions, saved):
                a.gate.copy_(g)


def test_trainable_parameters_are_the_adapter_alone(backbone, fresh, tmp_path):
    cfg = backbone.model.config
    width, layers = cfg.hidden_size, fresh.config.adapter_layers
    kv = cfg.num_key_value_heads * (width // cfg.num_attention_heads)
    r = fresh.config.lora_rank
    expected = (
        layers * fresh.config.prompt_tokens * width  # adapter prompts
        + layers * cfg.num_attention_heads  # gates
        + len(fresh.config.tasks) * width  # task tokens
        + (384 * width + width) + (width * width + width) + 2 * width  # projection + its norm
        + layers * (r * width + width * r + r * width + kv * r)  # LoRA on q and v
    )
    assert fresh.n_trainable() == expected
    assert fresh.n_trainable() < 0.01 * sum(p.numel() for p in backbone.model.parameters())
    path = fresh.save(tmp_path / "a", {"version": "test"})
    from safetensors.torch import load_file

    saved = load_file(str(path / "adapter.safetensors"))
    assert sum(v.numel() for v in saved.values()) == expected  # only trainable weights ship


def test_shipped_adapter_loads_on_its_pinned_encoder_and_answers_from_the_allowed_names(backbone):
    from models.datasets import HAPT_LABELS
    from models.llm.answer import SensorLLM

    llm = SensorLLM.shared()
    pin = llm.meta["adapter"]["modalities"]["motion"]
    assert pin["checkpoint"] == "motion-v1-hapt" and len(pin["sha256"]) == 64
    rng = np.random.default_rng(0)
    acc = rng.normal([0, 0, 9.8], 0.05, (2, 128, 3)).astype(np.float32)
    features = llm.features(acc, np.zeros_like(acc), 50.0, "waist")
    assert features.shape == (2, 5, 384)
    picked, scores = llm.choose(features, "activity", ["What is the person doing?"] * 2, list(HAPT_LABELS))
    assert set(picked) <= set(HAPT_LABELS) and scores.shape == (2, 6) and np.isfinite(scores).all()
    # yes/no about an activity follows the LLM's own activity choice for that window
    other = [next(label for label in HAPT_LABELS if label != p) for p in picked]
    assert llm.is_doing(features, picked) == [True, True] and llm.is_doing(features, other) == [False, False]
    assert llm.generate([[{"role": "user", "content": "Say hello."}]], "dialog", max_new_tokens=5)[0]


def test_the_shipped_adapter_reads_room_windows_through_its_pinned_room_encoder(backbone):
    from models.llm.answer import SensorLLM
    from models.llm.data import ROOM_QUESTIONS, room_answers
    from models.rooms.windows import N_INPUT, WINDOW_MIN

    llm = SensorLLM.shared()
    pin = llm.meta["adapter"]["modalities"]["env"]
    assert pin["checkpoint"] == "rooms-v1" and pin["sha256"] == llm.env.sha256
    x = np.random.default_rng(0).normal(0, 0.3, (3, N_INPUT, WINDOW_MIN)).astype(np.float32)
    features = llm.env.features(x)
    assert features.shape == (3, 1, 512)
    for kind, questions in ROOM_QUESTIONS.items():
        choices = room_answers()[kind]
        picked, scores = llm.choose(features, "room", [questions[0]] * 3, choices, modality="env")
        assert set(picked) <= set(choices) and scores.shape == (3, len(choices)) and np.isfinite(scores).all()


def test_a_changed_modality_checkpoint_is_refused(tmp_path):
    from models.llm.modalities import EnvModality, MotionModality

    with pytest.raises(ValueError, match="sha256"):
        MotionModality("motion-v1-hapt", expect_sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        EnvModality("rooms-v1", expect_sha256="0" * 64)


def test_room_questions_are_split_by_building_and_answer_with_the_windows_truth():
    from models.llm.data import (ROOM_FIT_BUILDINGS, ROOM_TEST_BUILDINGS, ROOM_VALIDATION_BUILDINGS, room_answers,
                                 room_examples)
    from models.rooms.train import TEST_FIRST, TRAIN_FIRST, VALIDATION_FIRST, RoomWindows

    spans = [range(first, first + n) for first, n in (ROOM_FIT_BUILDINGS, ROOM_VALIDATION_BUILDINGS, ROOM_TEST_BUILDINGS)]
    assert all(not set(a) & set(b) for i, a in enumerate(spans) for b in spans[i + 1:])
    # the room model's own split: the adapter fits where it trained and tests where it was tested
    assert (spans[0].start, spans[1].start, spans[2].start) == (TRAIN_FIRST, VALIDATION_FIRST, TEST_FIRST)
    rng = np.random.default_rng(1)
    n = 200
    rooms = RoomWindows(x=np.zeros((n, 18, 30), np.float32), count=rng.integers(0, 12, n),
                        occupancy=rng.integers(0, 5, n), use=rng.integers(0, 8, n), air=rng.integers(0, 3, n),
                        room=np.array([f"b{i % 3}-r" for i in range(n)]), kind=np.array(["office"] * n))
    data = room_examples(rooms, 150, seed=0)
    assert len(data) == 150 and len({e.window for e in data}) == 150  # windows drawn without repeats
    answers = room_answers()
    for e in data:
        kind = next(k for k, choices in answers.items() if e.choices == choices)
        assert e.task == "room" and e.modality == "env"
        assert e.answer == answers[kind][int(getattr(rooms, kind)[e.window])]
    assert {tuple(e.choices) for e in data} == {tuple(v) for v in answers.values()}  # every kind asked
    # balanced: a rare answer comes up as often as a common one
    rooms.occupancy[:] = np.where(np.arange(n) < 4, 4, 0)  # 4 windows of "more than 10 people", 196 empty
    drawn = [e.answer for e in room_examples(rooms, 3000, seed=0, balanced=True) if e.choices == answers["occupancy"]]
    assert 0.4 < drawn.count("more than 10 people") / len(drawn) < 0.6


def test_instruction_data_is_split_by_subject():
    from models.datasets import HAPT_LABELS
    from models.events import HAPT_TRANSITION_EVENTS
    from models.llm.data import TRANSITIONS, sensor_windows

    assert not set(FIT_SUBJECTS) & set(TEST_SUBJECTS)
    assert not set(VALIDATION_SUBJECTS) & set(TEST_SUBJECTS)
    assert not set(FIT_SUBJECTS) & set(VALIDATION_SUBJECTS)
    windows = sensor_windows(VALIDATION_SUBJECTS[:2])
    assert set(np.unique(windows.subjects)) == set(VALIDATION_SUBJECTS[:2])
    assert ((windows.activity >= 0) != (windows.transition >= 0)).all()  # each window is one kind
    data = examples(windows, seed=0)
    kinds = {e.task for e in data}
    assert kinds == {"activity", "yes_no", "transition", "caption", "event", "dialog"}
    for e in data:
        if e.choices:
            assert e.answer in e.choices
        if e.task == "activity":
            assert e.answer == HAPT_LABELS[windows.activity[e.window]]
        if e.task == "transition":
            assert e.answer == TRANSITIONS[windows.transition[e.window]]
        if e.task == "event":  # HAPT has no falls or jumps: a transition's posture change, or no event
            t = windows.transition[e.window]
            assert e.answer == ("no event" if t < 0 else HAPT_TRANSITION_EVENTS[t])
        if e.task == "dialog":  # the follow-up is about the same window as the first turn's answer
            first, answered = e.history
            assert first["role"] == "user" and answered == {"role": "assistant",
                                                            "content": HAPT_LABELS[windows.activity[e.window]]}
            assert (e.answer == "yes") == (e.question == f"And is the person {answered['content']}?")
    yes = np.mean([e.answer == "yes" for e in data if e.task == "yes_no"])
    assert 0.4 < yes < 0.6
    # with the classifier's readings, about 70 % of activity and yes/no questions carry the window's own reading
    readings = np.arange(len(windows)) % len(HAPT_LABELS)
    read = examples(windows, seed=0, readings=readings)
    carried = [e for e in read if e.question.startswith("The motion classifier reads:")]
    asked = [e for e in read if e.task in ("activity", "yes_no")]
    assert {e.task for e in carried} == {"activity", "yes_no"} and 0.6 < len(carried) / len(asked) < 0.8
    assert all(e.question.startswith(f"The motion classifier reads: {HAPT_LABELS[readings[e.window]]}. ")
               for e in carried)


def _rows(t0):
    spans = [("walking", 0, 30), ("sitting", 30, 90), ("walking", 90, 100), ("standing", 100, 200)]
    return [{"label": l, "started_at": t0 + timedelta(seconds=a), "ended_at": t0 + timedelta(seconds=b),
             "windows": int((b - a) / 1.28), "model_version": "m1", "device_id": "d"} for l, a, b in spans]


def test_grounded_numbers_come_from_the_rows_and_invented_ones_are_caught():
    from models.llm.grounding import episode_facts, faithful, grounded_answer

    t0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    facts = episode_facts(_rows(t0), t0, t0 + timedelta(seconds=150))  # the last episode is cut at 150 s
    duration = grounded_answer("How long was it walking?", facts)
    assert duration["numbers"] == [40] and "40 s" in duration["answer"]
    count = grounded_answer("how many times did it walk?", facts)
    assert count["numbers"] == [2]
    assert facts["activities"]["standing"]["seconds"] == 50
    assert faithful(duration["answer"], facts)
    assert not faithful("It was walking for 45 s.", facts)
    assert faithful("It walked twice, no numbers invented.", facts)
    empty = episode_facts([], t0, t0 + timedelta(seconds=60))
    assert "No activity was recorded" in grounded_answer("How long was it walking?", empty)["answer"]


def test_room_state_answers_state_the_stored_states_numbers():
    from models.llm.grounding import episode_facts, faithful, is_room_state_question, room_answer, room_state_facts

    t0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    states = [{"window_end": t0 + timedelta(minutes=5 * i), "occupancy": o, "occupancy_count": c, "occupied": c > 0,
               "room_use": u, "air_quality": "good", "model_version": "rooms-v1-1.0.0"}
              for i, (o, c, u) in enumerate([("empty", 0, "empty"), ("5-10 people", 7.4, "meeting"),
                                             ("2-4 people", 3.2, "meeting")])]
    facts = room_state_facts(states, t0 - timedelta(minutes=5), t0 + timedelta(minutes=10), hop_s=300)
    assert (facts["occupied_s"], facts["most_people"], facts["uses"]) == (600, 7, {"empty": 300, "meeting": 600})
    stated = room_answer(facts, "room r1")
    assert stated["numbers"] == [3, 600, 3, 7] and "2-4 people" in stated["answer"] and "10 min" in stated["answer"]
    no_episodes = episode_facts([], facts["start"], facts["end"])
    assert faithful(stated["answer"], no_episodes, room=facts)
    assert not faithful("At most 9 people were there.", no_episodes, room=facts)
    assert is_room_state_question("How many people are in the room?") and not is_room_state_question("How long was it walking?")
    assert "No room state" in room_answer(room_state_facts([], t0, t0, 300), "room r1")["answer"]


def test_rooms_compared_side_by_side_state_each_rooms_stored_occupied_time():
    from models.llm.grounding import comparison_answer, episode_facts, room_comparison_answer, room_state_facts

    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    end = t0 + timedelta(minutes=60)

    def states(occupied_windows, people):
        return [{"occupied": k < occupied_windows, "occupancy_count": people if k < occupied_windows else 0,
                 "room_use": "meeting" if k < occupied_windows else "empty", "occupancy": "2-4 people",
                 "window_end": t0 + timedelta(minutes=10 * (k + 1)), "air_quality": "good", "model_version": "r1"}
                for k in range(6)]

    facts = {f"room {r}": room_state_facts(states(n, p), t0, end, 600.0) for r, n, p in (("a", 2, 3), ("b", 5, 4))}
    out = room_comparison_answer(facts)
    assert out["per_subject"] == {"room a": 1200, "room b": 3000} and "room b was occupied longest" in out["answer"]
    assert "at most 4 people" in out["answer"] and out["kind"] == "comparison"
    # devices: the asked activity's seconds per device, ties named together
    rows = _rows(t0)
    same = comparison_answer("Who was walking longer?", {"device d": episode_facts(rows, t0, end),
                                                         "device e": episode_facts(rows, t0, end)})
    assert same["per_subject"] == {"device d": 40, "device e": 40} and "device d and device e equally" in same["answer"]
    idle = comparison_answer("Who was walking longer?", {"device d": episode_facts([], t0, end),
                                                         "device e": episode_facts(rows[1:2], t0, end)})
    assert idle["per_subject"] == {"device d": 0, "device e": 0} and "No episodes were recorded for device d" in idle["answer"]


def test_narration_queue_drops_and_counts_instead_of_blocking():
    from stream_workers.narration import NarrationStage, episode_item
    from stream_workers.records import Episode

    release, written = threading.Event(), []

    def slow_narrator(facts):
        release.wait(10)
        return [f"Line about {f[:10]} 99 s" for f in facts]  # 99 is in no episode: replaced by the template

    stage = NarrationStage(slow_narrator, written.extend, "test", queue_size=3, batch_size=2)
    episodes = [Episode("d", 1000.0 + 10 * i, 1008.0 + 10 * i, "walking", 0.9, 6, "m", closed=True) for i in range(10)]
    started = time.perf_counter()
    stage.offer_episodes(episodes)
    assert time.perf_counter() - started < 0.1  # offering never waits on the LLM
    release.set()
    stats = stage.close()
    assert stats["offered"] == 10 and stats["dropped"] >= 5 and stats["written"] == 10 - stats["dropped"]
    assert len(written) == stats["written"] and stats["unfaithful_replaced"] == stats["written"]
    assert all(r["text"] == episode_item(e).facts for r, e in zip(written, episodes))
