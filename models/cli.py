"""Commands of the models part: `iotlm eval`, `iotlm classify`, `iotlm train ssl|zero-shot|finetune`.

Heavy imports (torch, transformers) happen inside the commands so `iotlm --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

def _settings():
    from iotlm.settings import Settings

    return Settings()


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ref = report.get("reference") or {}
    console.print(
        f"[bold]{report['dataset']} {report['setting']}[/bold] model {report['model_version']}: "
        f"accuracy {100 * report['accuracy']:.1f} %, macro-F1 {100 * report['macro_f1']:.1f} %"
        + (f"  (UniMTS: {ref['accuracy']} % / {ref['macro_f1']} %)" if "accuracy" in ref else "")
    )
    table = Table("true \\ predicted", *[label[:10] for label in report["labels"]], "F1")
    for label, row in zip(report["labels"], report["confusion"]):
        table.add_row(label, *map(str, row), f"{report['per_class_f1'][label]:.2f}")
    console.print(table)
    console.print(f"windows {report['n_windows']}, test subjects {report['test_subjects']}, {report['seconds']} s")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    train_app = typer.Typer(help="Reproduce the shipped motion checkpoints.", no_args_is_help=True)

    @app.command("eval")
    def eval_command(
        dataset: str = typer.Option("hapt", help="hapt | basicmotions | rooms | all (the conditions table over every offline dataset)"),
        setting: str = typer.Option("zero-shot", help="zero-shot | few-shot | full | baseline (the feature SVM alone; full reports it too) | llm-qa (the adapter-LLM vs the classifier, docs/llm.md) | wording-validation (how unseen label wordings are grounded, on validation subjects) | zero-shot-validation (compares zero-shot training runs on validation subjects) | reference-validation (the workers' online gravity reference on train subjects; --limit S: their first S seconds)"),
        shots: int = typer.Option(10, help="windows per class for few-shot"),
        model: Optional[str] = typer.Option(None, help="checkpoint directory or name (default: settings)"),
        limit: Optional[int] = typer.Option(None, help="use about this many windows per split (quick checks)"),
        epochs: int = typer.Option(15, help="fine-tuning epochs (few-shot, full)"),
        seed: int = typer.Option(0),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        seeds: Optional[str] = typer.Option(None, help="--setting full: comma-separated seeds, e.g. 0,1,2: per-seed "
                                            "fine-tunes, feature baseline, fusion and seed ensemble, mean and std"),
        gyro_dropout: float = typer.Option(0.2, help="--setting full --seeds: share of fine-tuning windows without gyro"),
        reference: bool = typer.Option(True, "--reference/--no-reference", help="--setting full --seeds: the deep model "
                                       "fits on windows turned by each subject's label-free gravity reference (the shipped recipe)"),
        condition: Optional[list[str]] = typer.Option(None, help="--dataset all: only these rows (e.g. told, rate_10hz)"),
        out: Optional[Path] = typer.Option(None, help="--dataset all: write conditions-<version>.json/.md here "
                                                       "(default benchmarks/results/eval; '-' writes nothing)"),
        ground: Optional[str] = typer.Option(None, help="--dataset all: ground unseen label wordings in the trained "
                                             "concepts with TEMPERATURE,WEIGHT (e.g. 0.05,0.75; off by default)"),
    ) -> None:
        """Evaluate on held-out test subjects (rooms: held-out simulated buildings): accuracy, macro-F1, confusion."""
        import torch

        from models.evaluate import run_evaluation

        torch.set_num_threads(1)  # the CI machine is shared; more threads oversubscribe it
        if dataset == "rooms":
            from models.rooms.evaluate import run_room_evaluation

            report = run_room_evaluation(model, None, seed=seed, progress=not as_json)
            print(json.dumps(report) if as_json else json.dumps(report, indent=1))
            return
        if setting == "llm-qa":
            if dataset != "hapt":
                raise typer.BadParameter("llm-qa runs on --dataset hapt", param_hint="--dataset")
            from models.llm.evaluate import run_llm_qa

            torch.set_num_threads(2)  # the LLM's matrix products; the eval is long enough to want both cores
            report = run_llm_qa(model, per_class=limit or 50, seed=seed, progress=not as_json)
            print(json.dumps(report) if as_json else json.dumps(report, indent=1))
            return
        if setting == "wording-validation":
            from models.conditions import wording_validation

            report = wording_validation(model, limit=limit)
            print(json.dumps(report) if as_json else json.dumps(report, indent=1))
            return
        if setting == "reference-validation":
            from models.conditions import reference_validation

            report = reference_validation(model, first_s=float(limit) if limit else None)
            print(json.dumps(report) if as_json else json.dumps(report, indent=1))
            return
        if setting == "zero-shot-validation":
            from models.evaluate import zero_shot_validation

            report = zero_shot_validation(model, _settings().models.checkpoint_dir)
            print(json.dumps(report) if as_json else json.dumps(report, indent=1))
            return
        if dataset == "all":
            from models.conditions import markdown, run_conditions

            if setting != "zero-shot":
                raise typer.BadParameter("--dataset all runs the zero-shot conditions table (--setting zero-shot)",
                                         param_hint="--setting")
            target = None if str(out) == "-" else (out or Path("benchmarks/results/eval"))
            try:
                grounding = tuple(float(x) for x in ground.split(",")) if ground else None
            except ValueError:
                raise typer.BadParameter(f"{ground!r}: give TEMPERATURE,WEIGHT, e.g. 0.05,0.75", param_hint="--ground") from None
            if grounding is not None and (len(grounding) != 2 or grounding[0] <= 0 or not 0 <= grounding[1] <= 1):
                raise typer.BadParameter("TEMPERATURE > 0 and 0 <= WEIGHT <= 1", param_hint="--ground")
            report = run_conditions(model, only=set(condition) if condition else None, limit=limit,
                                    checkpoint_dir=_settings().models.checkpoint_dir, out_dir=target,
                                    grounding=grounding)
            print(json.dumps(report) if as_json else markdown(report))
            return
        if seeds is not None:
            from models.fullshot import run_full_shot

            if (dataset, setting) != ("hapt", "full"):
                raise typer.BadParameter("--seeds is for --dataset hapt --setting full", param_hint="--seeds")
            try:
                seed_list = tuple(int(x) for x in seeds.split(",") if x.strip())
            except ValueError:
                raise typer.BadParameter(f"{seeds!r}: give integers, e.g. 0,1,2", param_hint="--seeds") from None
            report = run_full_shot(model, seed_list, epochs, gyro_dropout, _settings().models.checkpoint_dir, limit,
                                   reference)
            print(json.dumps(report) if as_json else json.dumps(report, indent=1))
            return
        report = run_evaluation(dataset, setting, shots, model, limit, epochs, seed, _settings().models.checkpoint_dir)
        if as_json:
            print(json.dumps(report))
        else:
            _print_report(report)

    @app.command("classify")
    def classify_command(
        input: Path = typer.Option(..., "--input", exists=True, help=".npz with acc (N,T,3) m/s^2, optional gyro, sample_rate, "
                                   "optional device (N,): one id per window, each device's windows in time order"),
        labels: str = typer.Option(..., help="comma-separated label words"),
        placement: str = typer.Option("unknown", help="body placement: waist, wrist, pocket, ..."),
        model: Optional[str] = typer.Option(None, help="checkpoint directory or name (default: settings)"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    ) -> None:
        """Classify IMU windows against any label set given in words.

        With a `device` array, each device's gravity reference (where "up" is in its frame, estimated
        label-free from its walking windows, models/gravity.py) is an input of motion-v2; motion-v1 gets
        the windows turned to the mounting it knows (placement waist only; others are left as sent)."""
        from models.encoder import PLACEMENTS
        from models.gravity import ADAPTIVE_PLACEMENTS, GravityReference
        from models.inference import MotionClassifier, UnservedPlacement

        settings = _settings()
        names = [label.strip() for label in labels.split(",") if label.strip()]
        if not names:
            raise typer.BadParameter("give at least one label, e.g. --labels 'walking,sitting'", param_hint="--labels")
        if placement not in PLACEMENTS:
            raise typer.BadParameter(f"{placement!r} is not one of {', '.join(PLACEMENTS)}", param_hint="--placement")
        acc, gyro, rate, devices = _read_windows(input)
        classifier = MotionClassifier.load(model, device=settings.models.device, checkpoint_dir=settings.models.checkpoint_dir)
        up, references = None, None
        if devices is not None and (placement in ADAPTIVE_PLACEMENTS or classifier.gravity_inputs):
            import numpy as np

            up, references = np.zeros((len(acc), 3)), {}
            for device in dict.fromkeys(devices.tolist()):
                rows = np.flatnonzero(devices == device)
                ref = GravityReference()
                ref.update(acc[rows])
                direction = ref.direction()  # None before enough walking: that device's windows stay as sent
                up[rows] = 0.0 if direction is None else direction
                references[str(device)] = {"up": None if direction is None else np.round(direction, 4).tolist(),
                                           "gait_windows": ref.gait_count, "windows": ref.all_count}
        try:
            probabilities = classifier.predict_proba(acc, gyro, rate, names, placement, up=up)
        except UnservedPlacement as exc:
            raise typer.BadParameter(str(exc), param_hint="--placement") from None
        result = {
            "labels": names,
            "predictions": [names[i] for i in probabilities.argmax(1)],
            "probabilities": probabilities.astype(float).round(4).tolist(),
            "model_version": classifier.version,
        }
        if devices is not None:
            result["gravity_reference"] = references or (
                f"not used: {classifier.version} knows the trained reference only for {', '.join(ADAPTIVE_PLACEMENTS)}")
        if as_json:
            print(json.dumps(result))
        else:
            for i, (prediction, row) in enumerate(zip(result["predictions"], probabilities)):
                print(f"{i}: {prediction} ({row.max():.2f})")

    @train_app.command("ssl")
    def train_ssl_command(
        epochs_masked: int = typer.Option(4),
        epochs_contrastive: int = typer.Option(2),
        out: Path = typer.Option(Path("runs/ssl-v1"), help="output checkpoint directory"),
        limit: Optional[int] = typer.Option(None, help="train on this many windows (quick checks)"),
        seed: int = typer.Option(0),
        device: str = typer.Option("auto"),
    ) -> None:
        """Self-supervised pretraining on unlabelled HAPT train-subject windows."""
        from models.train import train_ssl

        print(train_ssl(_settings(), out, epochs_masked, epochs_contrastive, limit, seed, device=device))

    @train_app.command("zero-shot")
    def train_zero_shot_command(
        out: Optional[Path] = typer.Option(None, help="output directory (default: checkpoints/motion-v1)"),
        init: Optional[Path] = typer.Option(None, help="checkpoint to start from, e.g. runs/ssl-v1 (default: scratch)"),
        clips: int = typer.Option(8000, help="simulated clips (each recorded at two placements)"),
        epochs: int = typer.Option(14),
        max_steps: Optional[int] = typer.Option(None, help="stop after this many steps (quick checks)"),
        seed: int = typer.Option(0),
        device: str = typer.Option("auto"),
        recipe: str = typer.Option("v1", help="v1 (motion-v1) | v2 (motion-v2: gravity reference input, random "
                                              "mountings, all placements, low rates, compositional captions)"),
        mocap_share: float = typer.Option(0.0, help="share of clips from pybullet's DeepMimic mocap (0: procedural "
                                                    "only, as the shipped checkpoints)"),
    ) -> None:
        """Align the motion encoder with text on simulated clips (no HAPT labels)."""
        from models.train import train_zero_shot

        path, _ = train_zero_shot(_settings(), out, init, clips, epochs, seed=seed, device=device, max_steps=max_steps,
                                  recipe=recipe, mocap_share=mocap_share)
        print(path)

    @train_app.command("finetune")
    def train_finetune_command(
        init: Optional[str] = typer.Option(None, help="checkpoint to start from (default: settings default)"),
        out: Optional[Path] = typer.Option(None, help="output directory (default: checkpoints/<init>-hapt)"),
        epochs: int = typer.Option(15),
        seed: int = typer.Option(0),
        gyro_dropout: float = typer.Option(0.2, help="share of training windows without gyroscope"),
        reference: bool = typer.Option(True, "--reference/--no-reference", help="fit on windows turned by each subject's gravity reference"),
        features: bool = typer.Option(True, "--features/--no-features", help="fuse the feature SVM (models/fusion.py)"),
    ) -> None:
        """Full fine-tuning on HAPT train subjects (selection on validation subjects), then test."""
        from models.train import train_finetune

        print(train_finetune(_settings(), init, out, epochs, seed, gyro_dropout=gyro_dropout, reference=reference,
                             features=features))

    @train_app.command("rooms")
    def train_rooms_command(
        out: Path = typer.Option(Path(__file__).resolve().parent / "checkpoints" / "rooms-v1", help="output directory"),
        buildings: int = typer.Option(30, help="simulated training buildings"),
        epochs: int = typer.Option(12),
        seed: int = typer.Option(0),
        max_steps: Optional[int] = typer.Option(None, help="stop after this many steps (quick checks)"),
    ) -> None:
        """The room-state model on simulated buildings (held-out buildings are never simulated here)."""
        import torch

        from models.rooms.train import default_cache, train_rooms

        torch.set_num_threads(1)
        train_rooms(out, buildings=buildings, epochs=epochs, seed=seed, cache=default_cache(), max_steps=max_steps)
        print(out)

    @train_app.command("llm-adapter")
    def train_llm_adapter_command(
        out: Optional[Path] = typer.Option(None, help="output directory (default: checkpoints/iotlm-adapter-v2)"),
        steps: int = typer.Option(600),
        batch_size: int = typer.Option(12),
        lr: float = typer.Option(2e-3),
        motion: str = typer.Option("motion-v1-hapt", help="the frozen motion encoder (pinned by hash in the config)"),
        env: str = typer.Option("rooms-v1", help="the frozen room encoder ('none': motion only)"),
        room_share: float = typer.Option(0.33, help="share of the steps on room questions"),
        reading_share: float = typer.Option(0.7, help="share of activity and yes/no questions carrying the "
                                                      "classifier's reading of the window"),
        sim_share: float = typer.Option(0.12, help="share of the steps on simulated event windows (falls, jumps)"),
        llm: Optional[str] = typer.Option(None, "--llm", help="a Hugging Face causal-LM folder (default: SmolLM2-135M-Instruct)"),
        layers: int = typer.Option(3, help="top decoder layers with adapter prompts and LoRA"),
        threads: int = typer.Option(2, help="torch threads"),
        seed: int = typer.Option(0),
    ) -> None:
        """The IoT-LM adapter on HAPT fit subjects, simulated fit buildings and simulated fit people (validation
        subjects, buildings and people choose the step; test subjects, buildings and people unseen)."""
        import torch

        from models.llm.train import train_llm_adapter

        torch.set_num_threads(threads)
        print(json.dumps(train_llm_adapter(out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                           motion_checkpoint=motion, llm=llm,
                                           env_checkpoint=None if env == "none" else env, room_share=room_share,
                                           reading_share=reading_share, sim_share=sim_share,
                                           adapter_layers=layers)))

    app.add_typer(train_app, name="train")

    sim_app = typer.Typer(help="The IMU simulator's checks against real recordings (docs/simulator.md).",
                          no_args_is_help=True)

    @sim_app.command("check-foot")
    def check_foot_command(
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        plot: Optional[Path] = typer.Option(None, help="also write the real-vs-simulated figure here (png)"),
    ) -> None:
        """The simulator's IMU synthesis driven by optical markers vs a real foot IMU (gaitmap's recording)."""
        from models.simulator.realcheck import FootDataUnavailable, check_foot, plot_foot

        try:
            report = check_foot()
        except FootDataUnavailable as error:
            raise typer.BadParameter(str(error)) from error
        if plot is not None:
            plot_foot(plot)
        if as_json:
            print(json.dumps(report))
            return
        for side, m in report["feet"].items():
            print(f"{side} shoe: |gyro| r {m['gyro_magnitude_corr']:.3f}, |acc| r {m['acc_magnitude_corr']:.3f}, "
                  f"gyro xyz r {', '.join(f'{v:.3f}' for v in m['gyro_corr'])}, "
                  f"acc xyz r {', '.join(f'{v:.3f}' for v in m['acc_corr'])}, "
                  f"stride {m['stride_hz_real']:.3f} / {m['stride_hz_sim']:.3f} Hz, "
                  f"misses: {'; '.join(report['failures'][side]) or 'none'}")
        for source, stats in report["gait_statistics"].items():
            print(f"{source:20s} " + ", ".join(f"{key} {value:.2f}" for key, value in stats.items()))

    @sim_app.command("check-mocap")
    def check_mocap_command(
        devices: int = typer.Option(10, help="realistic belt phones per clip"),
        seed: int = typer.Option(0),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    ) -> None:
        """DeepMimic walk/run clips (pybullet) through the simulator vs HAPT train subjects' waist walking."""
        from models.simulator.mocap import MocapUnavailable
        from models.simulator.validate import mocap_vs_hapt_walking

        try:
            report = mocap_vs_hapt_walking(devices=devices, seed=seed)
        except MocapUnavailable as error:
            raise typer.BadParameter(str(error)) from error
        if as_json:
            print(json.dumps(report))
            return
        hapt = report["hapt_walking_train_p5_p50_p95"]
        print("HAPT train walking (waist), p5 / p50 / p95: "
              + ", ".join(f"{key} {' / '.join(f'{v:.2f}' for v in values)}" for key, values in hapt.items()))
        for name, stats in report["clips"].items():
            print(f"{name:14s} " + ", ".join(f"{key} {stats[key]:.2f}{'' if stats['in_range'][key] else ' (outside)'}"
                                             for key in hapt))

    app.add_typer(sim_app, name="sim")


def _read_windows(path: Path):
    """acc (N,T,3), gyro (N,T,3) or None, the rate and the device ids (N,) or None from a user's .npz,
    or a BadParameter saying what is wrong."""
    import numpy as np

    def bad(reason: str) -> typer.BadParameter:
        return typer.BadParameter(f"{path}: {reason}", param_hint="--input")

    try:
        z = np.load(path)
    except (OSError, ValueError) as exc:
        raise bad(f"not a readable .npz file ({exc})") from None
    with z:
        missing = {"acc", "sample_rate"} - set(z.files)
        if missing:
            raise bad(f"missing {', '.join(sorted(missing))} (it holds {', '.join(z.files) or 'nothing'})")
        arrays = {name: np.asarray(z[name], dtype=np.float32) for name in ("acc", "gyro") if name in z.files}
        rate = float(np.asarray(z["sample_rate"]).reshape(-1)[0])
        devices = np.asarray(z["device"]) if "device" in z.files else None
    if not np.isfinite(rate) or rate <= 0:
        raise bad(f"sample_rate must be a positive number of Hz, got {rate}")
    for name, array in arrays.items():
        if array.ndim == 2:
            array = arrays[name] = array[None]
        if array.ndim != 3 or array.shape[2] != 3 or array.shape[1] < 2:
            raise bad(f"{name} must be (N, T, 3) or (T, 3) with T >= 2, got shape {tuple(array.shape)}")
        if not np.isfinite(array).all():
            raise bad(f"{name} holds NaN or infinite values")
    if "gyro" in arrays and arrays["gyro"].shape != arrays["acc"].shape:
        raise bad(f"gyro shape {tuple(arrays['gyro'].shape)} differs from acc shape {tuple(arrays['acc'].shape)}")
    if devices is not None:
        if devices.dtype.kind not in "iuUS" or devices.shape != (len(arrays["acc"]),):
            raise bad(f"device must be ({len(arrays['acc'])},) integer or string ids, one per window, "
                      f"got {devices.dtype} of shape {tuple(devices.shape)}")
    return arrays["acc"], arrays.get("gyro"), rate, devices
