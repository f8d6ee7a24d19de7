"""Soft-label tweaks (spend, section 3.2): label smoothing and knowledge distillation."""
import torch
import torch.nn.functional as F

from . import TWEAKS, Tweak


def smoothed_targets(y: torch.Tensor, num_classes: int, alpha: float, style: str,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """style 'uniform' (the paper's formula, torch's label_smoothing): y*(1-alpha) + alpha/K;
    style 'others' (the released code): 1-alpha on the true class, alpha/(K-1) on the others."""
    if style == "uniform":
        return F.one_hot(y, num_classes).to(dtype) * (1 - alpha) + alpha / num_classes
    off = alpha / (num_classes - 1)
    return torch.full((len(y), num_classes), off, dtype=dtype, device=y.device).scatter_(1, y[:, None], 1 - alpha)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision tensors (bf16 / fp16 logits under autocast), others as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


@TWEAKS.register("ls")
class LabelSmoothing(Tweak):
    defaults = {"alpha": 0.1, "style": "uniform"}
    schema = {"alpha": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
              "style": {"enum": ["uniform", "others"]}}

    def loss(self, ctx):
        alpha, style = self.params["alpha"], self.params["style"]

        def fn(logits, y, x):
            # targets and loss in fp32 whatever the logits' dtype: in bf16 (autocast on a GPU) the true class
            # of CIFAR-100 would get 0.8984 instead of 0.901 and rows would sum to 0.997
            logits = at_least_fp32(logits)
            target = smoothed_targets(y, logits.shape[1], alpha, style, logits.dtype)
            return -(target * F.log_softmax(logits, 1)).sum(1).mean()
        return fn


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float,
            alpha: float, form: str = "mixed") -> torch.Tensor:
    """form 'mixed' (Hinton et al.; the authors' earlier code): alpha*T^2*KL(softmax(t/T) || softmax(s/T))
    (batch mean) + (1-alpha)*CE(s, y); form 'kl' (spend's section 3.2, L_KD = KL(q^T, p^T)): the KL term
    alone, unscaled (alpha unused). In fp32 whatever the logits' dtype (bf16 logits under autocast would give
    bf16 soft targets)."""
    student, teacher = at_least_fp32(student), at_least_fp32(teacher)
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                  reduction="batchmean", log_target=True)
    if form == "kl":
        return kl
    return alpha * temperature ** 2 * kl + (1 - alpha) * F.cross_entropy(student, y)


@TWEAKS.register("kd")
class Distillation(Tweak):
    """Soft labels from the trained dense model of the same seed (the teacher, in eval mode)."""
    defaults = {"temperature": 5.0, "alpha": 0.9, "form": "mixed"}
    schema = {"temperature": {"type": "number", "exclusiveMinimum": 0},
              "alpha": {"type": "number", "minimum": 0, "maximum": 1},
              "form": {"enum": ["mixed", "kl"]}}
    needs_teacher = True

    def loss(self, ctx):
        teacher, p = ctx.teacher(), self.params

        def fn(logits, y, x):
            with torch.no_grad():
                t = teacher(x)
            return kd_loss(logits, t, y, p["temperature"], p["alpha"], p["form"])
        return fn
