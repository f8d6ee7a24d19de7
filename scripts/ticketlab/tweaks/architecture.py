"""Architecture tweaks (spend, section 3.1): extra skip connections and smooth activations."""
from . import TWEAKS, Tweak


@TWEAKS.register("skip")
class Skip(Tweak):
    """A 1x1 conv + BN across every 3x3 conv, added before the activation (spend Fig. 3)."""

    def model_kwargs(self):
        return {"extra_skip": True}


@TWEAKS.register("swish")
class Swish(Tweak):
    """Swish x*sigmoid(x) in place of every ReLU."""

    def model_kwargs(self):
        return {"activation": "swish"}


@TWEAKS.register("mish")
class Mish(Tweak):
    """Mish x*tanh(softplus(x)) in place of every ReLU."""

    def model_kwargs(self):
        return {"activation": "mish"}
