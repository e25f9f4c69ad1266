"""MLflow: run setup, artifacts, logged models and the Model Registry champion."""
