"""The training machinery every stage shares: one step loop, one launcher.

    settings = LoopSettings.of(cfg.separation, report_every=...)     # typed, from the stage config
    run_loop(session, settings, model, optimizer, step_fn, ...)      # restore -> prepare -> steps -> report
    launch(train_loop, config, settings, datasets, run, name)       # TorchTrainer, or in this process

A stage (sslsep.separation.train, sslsep.contrastive.train) supplies only what is its own:
its model and optimizer, a step function (batch -> loss and metric parts), its validation and
what it saves. Learning-rate schedule, mixed precision and throughput metrics live here once.
"""

from sslsep.training.launch import launch
from sslsep.training.loop import LoopSettings, run_loop
from sslsep.training.schedule import lr_factor

__all__ = ["LoopSettings", "launch", "lr_factor", "run_loop"]
