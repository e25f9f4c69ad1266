"""Pure ``nn.Module``s, one file per architecture family; nothing Lightning, MLflow or Hydra here.

Every net is built as ``Net(input_shape=..., num_classes=..., **sizes)`` from the prepared
dataset's metadata and the model config.
"""

from archbench.nets.common import ACTIVATIONS, count_parameters

__all__ = ["ACTIVATIONS", "count_parameters"]
