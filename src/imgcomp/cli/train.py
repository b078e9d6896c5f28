"""``imgcomp train`` and ``imgcomp visualize``."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from imgcomp.data.folder import data_set_images
from imgcomp.errors import ImgcompError

console = Console(stderr=True)


def _presets_help(system: str = "mentzer2018") -> str:
    """--preset's help, from the system's presets dict (its config module's ``PRESETS``)."""
    import importlib

    from imgcomp.systems import get_system

    presets = getattr(importlib.import_module(get_system(system).config_class.__module__), "PRESETS", {})
    return f"Model size, one of the {system} presets: {', '.join(presets)} (default: the recipe's, else cpu)."


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_command)
    app.command(name="visualize")(visualize_command)


def train_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: checkpoints, logs, exported model (required)."),
    data: Optional[Path] = typer.Option(None, help="Folder of training images (e.g. DATA/train from `imgcomp data prepare`), or a .txt list of image paths where repeats weight an image (DATA/train-mixed.txt)."),
    val_data: Optional[Path] = typer.Option(None, help="Folder of validation images (e.g. DATA/val)."),
    recipe: Optional[str] = typer.Option(None, help="A named recipe of settings (see `imgcomp train --list-recipes`)."),
    preset: Optional[str] = typer.Option(None, help=_presets_help()),
    steps: Optional[int] = typer.Option(None, help="Total training steps."),
    target_bpp: Optional[float] = typer.Option(None, help="Rate target t in bits per pixel (of the highest importance head)."),
    heads: Optional[int] = typer.Option(None, help="Importance-map heads: >1 trains one multi-rate model."),
    latent_channels: Optional[int] = typer.Option(None, help="Latent channels K."),
    context_channels: Optional[int] = typer.Option(None, help="Hidden channels of the context model P (fewer: faster coding)."),
    mask_symbol: Optional[bool] = typer.Option(None, "--mask-symbol/--no-mask-symbol", help="P codes masked-out positions as their own symbol (sees where the importance mask ends)."),
    init_from: Optional[str] = typer.Option(None, help="Exported model (RUN/model) or shipped model name whose weights start the run."),
    context_only: bool = typer.Option(False, "--context-only", help="Train only P, on the frozen auto-encoder of --init-from."),
    decoder_only: bool = typer.Option(False, "--decoder-only", help="Train only the decoder D of --init-from, for distortion: its encoder, quantizer and P (so its files) stay unchanged."),
    encoder_only: bool = typer.Option(False, "--encoder-only", help="Train only the encoder E of --init-from, for its frozen decoder, quantizer and P."),
    rate_through_context: Optional[bool] = typer.Option(None, "--rate-through-context/--no-rate-through-context", help="Let the rate's gradient reach E through P's input (the paper's text), not only through the importance mask."),
    batch_size: Optional[int] = typer.Option(None, help="Images per step (over all processes)."),
    crop: Optional[int] = typer.Option(None, help="Training crop size in pixels."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate of E, D and Q."),
    beta: Optional[float] = typer.Option(None, help="Rate weight beta."),
    colour_weight: Optional[float] = typer.Option(None, help="Weight of the colour anchor: mean |x - x_hat| / 255 (of --colour-pool block means) added to 1 - MS-SSIM. 0: MS-SSIM only, as in the paper."),
    colour_pool: Optional[int] = typer.Option(None, help="Block size over which the colour anchor averages before comparing (1: per pixel)."),
    criterion: Optional[str] = typer.Option(None, help="Distortion: ms_ssim (Mentzer et al.), dpc (Patel et al.: LPIPS + (1 - MS-SSIM)) or dpl (LPIPS alone)."),
    lpips_net: Optional[str] = typer.Option(None, help="LPIPS backbone of dpc/dpl: alex (ST-LPIPS AlexNet) or vgg (VGG-16, ~2.5x slower per step)."),
    decoder_kernel: Optional[int] = typer.Option(None, help="Kernel of the decoder's stride-2 up-convolutions: 5 (Mentzer et al.) or 2 (Patel et al., no overlap)."),
    importance_pool: Optional[int] = typer.Option(None, help="Average the importance map over NxN latent positions (1: per position, the paper)."),
    lowpass_block: Optional[int] = typer.Option(None, help="Train for the decoder output with the low-pass correction layer of this block size added (16, 32, 64; 0: off, the paper)."),
    lowpass_step: Optional[int] = typer.Option(None, help="Quantization step of that layer (1-16 levels)."),
    adversarial: Optional[bool] = typer.Option(None, "--adversarial/--no-adversarial", help="rippel2017: the multiscale adversarial training of sec. 4 (the cpu-gan recipe turns it on)."),
    workers: Optional[int] = typer.Option(None, help="Data loader worker processes."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    val_every: Optional[int] = typer.Option(None, help="Validate every N steps."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Checkpoint every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint (pass --steps to extend it)."),
    force: bool = typer.Option(False, "--force", help="Start over, deleting an existing run in --out."),
    list_recipes: bool = typer.Option(False, "--list-recipes", help="Print the recipes and exit."),
    system: str = typer.Option("mentzer2018", "--system", help="The published system to train: mentzer2018, patel2019 (its recipes; a mentzer2018 network) or rippel2017."),
) -> None:
    """Train a context-model codec (Mentzer et al. 2018). Ctrl-C stops cleanly with a checkpoint.

    Launch with `torchrun --nproc-per-node N -m imgcomp train ...` for multi-process (DDP) training.
    """
    from imgcomp.systems import get_system

    chosen = get_system(system)
    training, recipes = chosen.training(), chosen.recipes()
    RECIPES, build_config = recipes.RECIPES, recipes.build_config
    CONFIG_FILE, TrainConfig, train = training.CONFIG_FILE, training.TrainConfig, training.train

    if list_recipes:
        for name, recipe_def in RECIPES.items():
            typer.echo(f"{name}: {recipe_def['description']}")
        return
    if out is None:
        raise ImgcompError("--out is required: the run folder (checkpoints, logs, exported model)")
    overrides = {
        "data": str(data) if data else None, "val_data": str(val_data) if val_data else None,
        "preset": preset, "steps": steps, "target_bpp": target_bpp, "heads": heads,
        "latent_channels": latent_channels, "context_channels": context_channels,
        "mask_symbol": mask_symbol, "init_from": init_from, "context_only": context_only or None,
        "decoder_only": decoder_only or None, "encoder_only": encoder_only or None,
        "rate_through_context": rate_through_context,
        "batch_size": batch_size, "crop": crop, "lr": lr,
        "beta": beta, "colour_weight": colour_weight, "colour_pool": colour_pool,
        "criterion": criterion, "lpips_net": lpips_net, "decoder_kernel": decoder_kernel,
        "importance_pool": importance_pool, "lowpass_block": lowpass_block, "lowpass_step": lowpass_step, "adversarial": adversarial, "workers": workers, "seed": seed, "val_every": val_every,
        "checkpoint_every": checkpoint_every,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config_path = out / CONFIG_FILE
    if resume:
        if not config_path.is_file():
            raise ImgcompError(f"{out}: no run to resume (missing {CONFIG_FILE})")
        stored = json.loads(config_path.read_text())
        allowed = {"steps", "workers", "val_every", "checkpoint_every", "val_data"}
        for key in ("data", "val_data"):  # the same folder, however it is spelled
            if key in overrides and stored.get(key) and _same_path(overrides[key], stored[key]):
                overrides[key] = stored[key]
        changed = {k for k, v in overrides.items() if stored.get(k) != v} - allowed
        if changed:
            raise ImgcompError(f"cannot change {', '.join(sorted(changed))} when resuming")
        stored.update(overrides)
        stored.setdefault("rate_through_context", False)  # runs from before 0.2 trained without it
        config = TrainConfig(**{f.name: stored[f.name] for f in fields(TrainConfig) if f.name in stored})
    else:
        if out.exists() and any(out.iterdir()):
            if not force:
                raise ImgcompError(f"{out}: exists and is not empty (use --resume to continue it or --force to start over)")
            shutil.rmtree(out)
        config = build_config(recipe, overrides)
    try:
        data_set_images(config.data)  # a folder or a list file, checked before the run starts
    except ImgcompError as exc:
        raise ImgcompError(f"{exc} (run `imgcomp data prepare --out DATA`)") from None

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
    ) as bar:
        task = bar.add_task("train", total=config.steps, completed=0, status="")

        def progress(step: int, total: int, metrics: dict) -> None:
            status = ""
            if metrics:
                quality = f"MS-SSIM {metrics['ms_ssim']:.4f}  " if "ms_ssim" in metrics else ""
                status = (
                    f"loss {metrics.get('loss', 0):.3f}  bpp {metrics.get('masked_bpp', metrics.get('bpp', 0)):.3f}  "
                    f"{quality}{metrics.get('steps_per_s', 0):.2f} steps/s"
                )
            bar.update(task, completed=step, status=status)

        try:
            result = train(config, out, resume=resume, progress=progress)
        except KeyboardInterrupt as exc:  # a second Ctrl-C: stopped at once
            saved = getattr(exc, "checkpoint_step", None)
            where = f"checkpoint at step {saved} in {out}" if saved is not None else f"no checkpoint yet in {out}"
            console.print(
                f"interrupted at step {getattr(exc, 'step', '?')}; {where}; resume with: imgcomp train --out {out} --resume"
            )
            raise typer.Exit(130) from None
    step = result.pop("step", None)
    if result.pop("stopped_early"):
        console.print(
            f"interrupted at step {step}; checkpoint at step {step} in {out}; resume with: imgcomp train --out {out} --resume"
        )
    else:
        console.print(f"done: model exported to {out / 'model'}")
    typer.echo(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()}))


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return a == b


def visualize_command(
    image: Path = typer.Argument(..., help="Image to analyse."),
    model: str = typer.Option(..., "--model", "-m", help="Exported model folder (RUN/model) or shipped model name."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs."),
    quality: Optional[int] = typer.Option(None, "--quality", "-q", help="Importance head (1 = lowest rate); default: highest."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing PNGs."),
) -> None:
    """Write what the model's system can show of its latent as PNGs (Mentzer et al. 2018: the
    importance map and every latent channel, Fig. 6)."""
    from imgcomp.zoo import get_model, model_folder

    loaded = get_model(model)
    paths = loaded.system.visualize(image, model_folder(model), out, quality=quality, force=force)
    for path in paths:
        typer.echo(str(path))
