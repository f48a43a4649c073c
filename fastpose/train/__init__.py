"""Training loops (one module per model) and the infrastructure they share.

- :mod:`.config` and :mod:`.args` (no torch): the trainers' configs, presets and command-line
  flags, so that ``fastpose ... --help`` answers without importing torch;
- :mod:`.common`: runtime (one process or torchrun), checkpoints, and the one training loop
  (epochs, steps, checkpoints, ``max_steps`` / ``time_limit`` / Ctrl-C stops, exact resume);
- :mod:`.spgnet`, :mod:`.volumetric`: each model's data, step and evaluation.
"""
