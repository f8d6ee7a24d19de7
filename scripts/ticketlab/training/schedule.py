"""The learning rate as a pure function of the step (so a resumed run needs no scheduler state), and the
number of steps a recipe trains."""
from __future__ import annotations

import math

from ..specs import Recipe
from .numerics import TrainingError


def lr_at(recipe: Recipe | dict, epoch: int, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate for global step `step` (in epoch `epoch`, 0-based): an optional warm-up
    (constant at warmup.lr, or linear from warmup.lr to lr, over warmup.epochs), then the schedule:
    `step` multiplies lr by gamma at every milestone epoch reached (as torch's MultiStepLR, same
    arithmetic), `cosine` decays lr to 0 over all steps (half a cosine, per step)."""
    recipe = Recipe.from_dict(recipe)
    base, warm = recipe.lr, recipe.warmup or {}
    if warm.get("epochs") and epoch < warm["epochs"]:
        if warm.get("shape", "constant") == "linear":
            return warm["lr"] + (base - warm["lr"]) * step / (warm["epochs"] * steps_per_epoch)
        return warm["lr"]
    if recipe.schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    lr = base
    for m in recipe.milestones:
        if epoch >= m:
            lr *= recipe.gamma
    return lr


def step_counts(recipe: Recipe | dict, n_train: int, name: str) -> tuple[int, int, int]:
    """(steps per epoch, epochs, total steps) of a recipe on n_train examples: recipe.steps, when set, cuts
    the last epoch short (and must fit in recipe.epochs)."""
    recipe = Recipe.from_dict(recipe)
    steps_per_epoch = -(-n_train // recipe.batch_size)
    epochs = recipe.epochs
    if recipe.steps:
        if recipe.steps > epochs * steps_per_epoch:
            raise TrainingError(f"{name}: recipe.steps {recipe.steps} needs more than recipe.epochs "
                                f"{epochs} ({steps_per_epoch} steps per epoch)")
        epochs = -(-recipe.steps // steps_per_epoch)
    return steps_per_epoch, epochs, recipe.steps or epochs * steps_per_epoch
