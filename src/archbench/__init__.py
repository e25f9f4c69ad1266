"""archbench: train, tune, track and compare the classic neural architectures on real data."""

__version__ = "0.1.0"
