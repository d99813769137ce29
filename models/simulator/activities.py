"""The activity catalogue: canonical label -> motion generator and natural-language descriptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.simulator import daily, exercises, locomotion, postures
from models.simulator.body import SubjectParams
from models.simulator.motion import Motion

MotionGenerator = Callable[[np.ndarray, SubjectParams, np.random.Generator], Motion]


@dataclass(frozen=True)
class ActivitySpec:
    name: str  # canonical label, also the first description
    generate: MotionGenerator  # (t (T,), subject, rng) -> Motion
    paraphrases: tuple[str, ...]

    @property
    def descriptions(self) -> list[str]:
        return [self.name, *self.paraphrases]

    def sample_descriptions(self, rng: np.random.Generator, k: int = 4) -> list[str]:
        """The label plus k paraphrases in random order (text augmentation for contrastive training)."""
        picked = rng.permutation(len(self.paraphrases))[:k]
        return [self.name, *(self.paraphrases[i] for i in picked)]


def _spec(name: str, generate: MotionGenerator, *paraphrases: str) -> tuple[str, ActivitySpec]:
    return name, ActivitySpec(name, generate, paraphrases)


ACTIVITIES: dict[str, ActivitySpec] = dict([
    _spec("walking", locomotion.walking,
          "a person walks", "someone walking at a normal pace", "walking on level ground",
          "a person strolling along a corridor", "taking a walk", "the person is walking forward"),
    _spec("running", locomotion.running,
          "a person runs", "someone jogging", "running at a steady pace", "a person sprinting along",
          "going for a run", "the person is running"),
    _spec("walking upstairs", locomotion.walking_upstairs,
          "a person walks up the stairs", "climbing stairs", "someone ascending a staircase",
          "going upstairs", "walking up a flight of steps", "stepping up stairs"),
    _spec("walking downstairs", locomotion.walking_downstairs,
          "a person walks down the stairs", "descending stairs", "someone going downstairs",
          "walking down a staircase", "coming down a flight of steps", "stepping down stairs"),
    _spec("standing", postures.standing_still,
          "a person stands still", "someone standing upright", "standing in place",
          "the person is standing and not moving", "standing quietly", "waiting on their feet"),
    _spec("sitting", postures.sitting_still,
          "a person sits on a chair", "someone sitting down", "sitting still", "seated and resting",
          "the person is sitting", "sitting at a desk without moving"),
    _spec("lying", postures.lying_still,
          "a person lies down", "someone lying in bed", "lying flat", "lying down at rest",
          "resting horizontally", "the person is lying down and still", "reclining flat"),
    _spec("sit-to-stand", postures.sit_to_stand,
          "a person stands up from a chair", "getting up from sitting", "rising from a seat",
          "someone going from sitting to standing", "standing up"),
    _spec("stand-to-sit", postures.stand_to_sit,
          "a person sits down on a chair", "sitting down from standing", "lowering oneself into a seat",
          "someone going from standing to sitting", "taking a seat"),
    _spec("sit-to-lie", postures.sit_to_lie,
          "a person lies down from sitting", "going from sitting to lying", "lying back onto the bed",
          "someone reclining from a seated position", "getting into bed from sitting on its edge"),
    _spec("lie-to-sit", postures.lie_to_sit,
          "a person sits up from lying", "going from lying to sitting", "sitting up in bed",
          "someone getting up to a seated position", "rising from lying to sitting"),
    _spec("stand-to-lie", postures.stand_to_lie,
          "a person lies down from standing", "going from standing to lying", "getting into bed",
          "someone lying down on a bed", "lowering oneself to lie down"),
    _spec("lie-to-stand", postures.lie_to_stand,
          "a person gets up from lying", "going from lying to standing", "getting out of bed",
          "someone rising from bed to their feet", "standing up after lying down"),
    _spec("jumping", locomotion.jumping,
          "a person jumps", "someone jumping up and down", "hopping on the spot", "repeated jumps",
          "jumping in place", "the person is bouncing with jumps"),
    _spec("falling", postures.falling,
          "a person falls", "someone falls down to the floor", "a fall", "losing balance and falling",
          "tripping and landing on the ground", "a person collapses and lies on the floor"),
    _spec("cycling", daily.cycling,
          "a person rides a bicycle", "someone cycling", "riding a bike", "pedalling a bicycle",
          "biking along the road", "the person is cycling"),
    _spec("eating", daily.eating,
          "a person eats", "someone eating a meal", "eating with a fork", "having lunch at a table",
          "bringing food to the mouth", "the person is eating"),
    _spec("drinking", daily.drinking,
          "a person drinks", "someone drinking from a cup", "sipping a drink", "drinking water from a glass",
          "raising a cup to the mouth", "having a drink"),
    _spec("typing", daily.typing,
          "a person types on a keyboard", "someone typing", "typing at a computer", "working at a laptop",
          "keyboard typing at a desk", "the person is typing"),
    _spec("writing", daily.writing,
          "a person writes with a pen", "someone writing", "writing on paper", "handwriting notes",
          "writing at a desk", "the person is writing by hand"),
    _spec("washing hands", daily.washing_hands,
          "a person washes their hands", "someone washing hands at a sink", "rubbing hands under water",
          "hand washing", "scrubbing the hands clean"),
    _spec("brushing teeth", daily.brushing_teeth,
          "a person brushes their teeth", "someone brushing teeth", "tooth brushing",
          "cleaning teeth with a toothbrush", "the person is brushing their teeth"),
    _spec("vacuuming", daily.vacuuming,
          "a person vacuums the floor", "someone vacuuming", "hoovering the carpet",
          "cleaning the floor with a vacuum cleaner", "pushing a vacuum cleaner back and forth"),
    _spec("cooking", daily.cooking,
          "a person cooks", "someone cooking in the kitchen", "preparing food at the stove",
          "stirring a pot", "chopping and stirring while cooking", "the person is cooking"),
    _spec("waving", daily.waving,
          "a person waves", "someone waving a hand", "waving hello", "waving goodbye",
          "raising a hand and waving", "the person greets by waving"),
    _spec("clapping", daily.clapping,
          "a person claps", "someone clapping hands", "applauding", "clapping the hands together",
          "giving a round of applause", "the person is clapping"),
    _spec("playing badminton", daily.badminton,
          "a person plays badminton", "someone playing badminton", "swinging a badminton racket",
          "hitting a shuttlecock", "racket sport play", "playing a racket game"),
    _spec("sweeping", daily.sweeping,
          "a person sweeps the floor", "someone sweeping with a broom", "sweeping", "brushing the floor",
          "cleaning the floor with a broom"),
    _spec("push-ups", daily.push_ups,
          "a person does push-ups", "someone doing press-ups", "push-up exercise", "doing push ups on the floor",
          "exercising with push-ups"),
    _spec("squats", exercises.squats,
          "a person does squats", "knees bending", "crouching down and standing up again", "squatting exercise",
          "someone bending the knees repeatedly"),
    _spec("jumping jacks", exercises.jumping_jacks,
          "a person does jumping jacks", "star jumps", "jumping with arms and legs spreading out",
          "someone doing jumping jacks", "jump and spread arms overhead"),
    _spec("rope jumping", exercises.rope_jumping,
          "a person skips rope", "jumping rope", "someone skipping with a rope", "rope skipping",
          "small quick hops over a turning rope"),
    _spec("nordic walking", exercises.nordic_walking,
          "a person walks with poles", "nordic walking", "someone walking with trekking poles",
          "brisk walking using sticks", "pole walking"),
    _spec("elevator up", exercises.elevator_up,
          "a person rides an elevator up", "standing in a lift going up", "someone taking the elevator upstairs",
          "moving up in an elevator", "elevator ascending"),
    _spec("elevator down", exercises.elevator_down,
          "a person rides an elevator down", "standing in a lift going down",
          "someone taking the elevator downstairs", "moving down in an elevator", "elevator descending"),
    _spec("smoking", exercises.smoking,
          "a person smokes", "someone smoking a cigarette", "taking a drag on a cigarette", "smoking",
          "raising a cigarette to the lips now and then"),
    _spec("talking on the phone", exercises.phone_call,
          "a person talks on the phone", "someone making a phone call", "holding a phone to the ear",
          "on a phone call", "talking into a mobile phone"),
    _spec("sit-ups", exercises.sit_ups,
          "a person does sit-ups", "someone doing crunches", "sit-up exercise", "curling the trunk up from lying",
          "abdominal crunches on the floor"),
    _spec("bending forward", exercises.bending_forward,
          "a person bends forward at the waist", "waist bends forward", "someone bending over and standing up",
          "touching the toes", "bending down"),
    _spec("arm raises", exercises.arm_raises,
          "a person raises both arms", "frontal elevation of arms", "lifting the arms forward and up",
          "someone raising their arms overhead", "arm raise exercise"),
    _spec("ironing", exercises.ironing,
          "a person irons clothes", "someone ironing a shirt", "ironing", "pressing clothes with an iron",
          "sliding an iron over an ironing board"),
    _spec("rowing", exercises.rowing,
          "a person rows on a rowing machine", "someone rowing", "indoor rowing", "rowing exercise",
          "pulling the handle of a rowing machine"),
    _spec("dribbling a basketball", exercises.dribbling,
          "a person dribbles a basketball", "someone bouncing a basketball", "dribbling",
          "bouncing a ball with one hand", "playing with a basketball"),
])  # fmt: skip
