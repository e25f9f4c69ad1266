"""The file MLflow runs to build the raw-input wrapper when it loads an exported ``pyfunc`` model
("models from code": no pickled Python object travels with the model)."""

from mlflow.models import set_model

from archbench.tracking.serving import RawInputModel

set_model(RawInputModel())
