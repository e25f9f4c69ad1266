"""LightningModules by learning problem: the only place with ``training_step``."""
