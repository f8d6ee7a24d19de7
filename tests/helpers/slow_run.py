"""A training run in its own process, for the kill/preemption tests: `python slow_run.py SPEC_JSON OUTDIR`.
The `_slow` tweak (registered here and imported by the tests) sleeps a little before every step and touches
OUTDIR/midway once the run is halfway through its second epoch, so a test can kill it mid-epoch."""
import json
import os
import sys
import time

from ticketlab.tweaks import TWEAKS, Tweak


@TWEAKS.register("_slow")
class Slow(Tweak):
    defaults = {"seconds": 0.02, "marker": ""}

    def on_train_step(self, model, progress, ctx):
        time.sleep(self.params["seconds"])
        if progress >= 1.5 and self.params["marker"]:
            open(self.params["marker"], "a").close()


if __name__ == "__main__":
    from ticketlab.training import run
    spec = json.loads(sys.argv[1])
    run(spec, sys.argv[2])
    sys.exit(0 if os.path.exists(os.path.join(sys.argv[2], "final.pt")) else 1)
