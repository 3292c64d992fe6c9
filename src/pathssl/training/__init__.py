"""One training loop for every self-supervised method in pathssl.

`loop.train` drives a `step.TrainStep` (what a method owns: its model, optimiser, data and
loss) through steps, mixed precision, gradient clipping, logging, checkpoints and exact
resume, in one process or many under torchrun. The distributed environment is read once,
at the entry point (`distributed.init_distributed`), and passed down.
"""
