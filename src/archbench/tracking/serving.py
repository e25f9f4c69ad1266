"""A logged model wrapped to take raw inputs over MLflow's scoring server (``mlflow models serve``):
new table rows by column name, texts, or image or WAV files (base64-encoded: JSON carries no
bytes). The logged model itself is a plain net (MLflow's pytorch flavour), so served as it is it
takes prepared tensors only; this ``pyfunc`` wrapper reads the
inputs as ``archbench-predict`` does (the same encoders, the model's own MLmodel metadata) and
answers labels with probabilities, or a regressor's predictions in the target's units.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

TEXT_COLUMN = "text"
IMAGE_COLUMN = "image"  # an image file's bytes (PNG, JPEG, ...), base64-encoded
AUDIO_COLUMN = "audio"  # a WAV file's bytes, base64-encoded


class RawInputModel(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame)``: a ``text`` column for a text classifier, an ``image`` (``audio``) column
    of base64 file bytes for an image (spoken-word) classifier, the training table's columns for a
    table model; a DataFrame of ``label``, ``probability`` and one ``p(<class>)`` per class, or of
    ``prediction``."""

    def load_context(self, context) -> None:
        import mlflow.pytorch

        # as logged: in evaluation mode (a pt2 program was exported so, a pickled net saved so)
        self.net = mlflow.pytorch.load_model(context.artifacts["torch_model"], map_location="cpu")
        self.reads = json.loads(Path(context.artifacts["reads"]).read_text())

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        from archbench.data.sources.table_file import encode_rows
        from archbench.errors import ArchbenchError

        try:
            if self.reads["kind"] == "text":
                texts = [str(t) for t in model_input[TEXT_COLUMN]]
                empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
                if empty is not None:
                    raise MlflowException(f"text {empty} is empty", INVALID_PARAMETER_VALUE)
                outputs = self.net.predict_texts(texts)
            elif self.reads["kind"] == "image":
                with torch.no_grad():
                    outputs = self.net(_image_tensor(model_input[IMAGE_COLUMN], self.reads["image_input"]))
            elif self.reads["kind"] == "audio":
                outputs = self.net.predict_waves(_waves(model_input[AUDIO_COLUMN], self.net.sample_rate))
            else:
                with torch.no_grad():
                    outputs = self.net(torch.from_numpy(encode_rows(model_input, self.reads["table_input"], "request")))
        except ArchbenchError as err:  # a missing column, an unseen category: the client's request
            raise MlflowException(str(err), INVALID_PARAMETER_VALUE) from None
        return _answer(outputs, self.reads)


def _file_bytes(encoded, kind: str) -> list[bytes]:
    """Each base64 string's bytes; one that is not base64 is the client's error, named by index."""
    import base64
    import binascii

    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    files = []
    for i, value in enumerate(encoded):
        try:
            files.append(base64.b64decode(str(value), validate=True))
        except binascii.Error:
            raise MlflowException(f"{kind} {i}: not base64", INVALID_PARAMETER_VALUE) from None
    return files


def _image_tensor(encoded, settings: dict[str, Any]):
    """Base64 image files → the model's input tensor, each read as ``archbench-predict`` reads a file."""
    import io

    import numpy as np
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    from archbench.data.images import model_inputs, read_image
    from archbench.errors import DataError

    size = (int(settings["size"][0]), int(settings["size"][1]))
    images = []
    for i, data in enumerate(_file_bytes(encoded, "image")):
        try:
            images.append(read_image(io.BytesIO(data), int(settings["channels"]), size))
        except DataError:
            raise MlflowException(f"image {i}: not an image file Pillow reads", INVALID_PARAMETER_VALUE) from None
    return model_inputs(np.stack(images), settings)


def _waves(encoded, sample_rate: int) -> list:
    """Base64 WAV files → mono waveforms at the model's rate, read as ``archbench-predict`` reads a
    file (a WAV it cannot read is a DataError naming ``audio <i>``: the client's error)."""
    from archbench.data.audio import read_wav

    return [read_wav(f"audio {i}", sample_rate, data=data) for i, data in enumerate(_file_bytes(encoded, "audio"))]


def _answer(outputs, reads: dict[str, Any]) -> pd.DataFrame:
    values = outputs.detach().reshape(len(outputs), -1).numpy()
    if reads["task"] == "regression":
        return pd.DataFrame({"prediction": values[:, 0]})
    names = list(reads["class_names"]) or [str(i) for i in range(values.shape[1])]
    best = values.argmax(axis=1)
    return pd.DataFrame({"label": [names[i] for i in best], "probability": values.max(axis=1),
                         **{f"p({name})": values[:, i] for i, name in enumerate(names)}})


def raw_input_reads(model: Any, metadata: dict[str, Any], tags: dict[str, str]) -> dict[str, Any] | None:
    """What the wrapper reads and answers, for a model it can serve (a text, image or spoken-word
    classifier, or a model trained on a table with named columns); None for any other."""
    task = tags.get("task", "classification")
    common = {"task": task, "class_names": json.loads(tags.get("class_names", "[]"))}
    if hasattr(model, "predict_texts") and task == "classification":
        return {"kind": "text", **common}
    if metadata.get("table_input") and task in ("classification", "regression"):
        return {"kind": "table", "table_input": metadata["table_input"], **common}
    if metadata.get("image_input") and task == "classification":
        return {"kind": "image", "image_input": metadata["image_input"], **common}
    if hasattr(model, "predict_waves") and task == "classification":
        return {"kind": "audio", "sample_rate": int(model.sample_rate), **common}
    return None


def example_input(reads: dict[str, Any]) -> pd.DataFrame:
    """One request row: a short text, a mid-grey image, half a second of silence, or the training
    mean of each numeric column and the first training value of each categorical one."""
    if reads["kind"] == "text":
        return pd.DataFrame({TEXT_COLUMN: ["a quietly moving film"]})
    if reads["kind"] == "image":  # a mid-grey image of the model's size, as a PNG file
        import base64
        import io

        from PIL import Image

        height, width = (int(n) for n in reads["image_input"]["size"])
        png = io.BytesIO()
        Image.new("L", (width, height), 128).save(png, format="PNG")
        return pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(png.getvalue()).decode()]})
    if reads["kind"] == "audio":  # half a second of silence, 16-bit mono PCM at the model's rate
        import base64
        import io

        import numpy as np

        from archbench.data.audio import write_wav

        rate = int(reads["sample_rate"])
        wav = write_wav(io.BytesIO(), np.zeros(rate // 2, dtype=np.float32), rate)
        return pd.DataFrame({AUDIO_COLUMN: [base64.b64encode(wav.getvalue()).decode()]})
    spec = reads["table_input"]
    means = dict(zip(spec["columns"], spec["normalization"]["mean"], strict=True))
    return pd.DataFrame([{**{c: float(means[c]) for c in spec["numeric"]},
                          **{c: str(values[0]) for c, values in spec["categories"].items()}}])


def _signature(reads: dict[str, Any]):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    column = {"text": TEXT_COLUMN, "image": IMAGE_COLUMN, "audio": AUDIO_COLUMN}.get(reads["kind"])
    if column:
        return ModelSignature(inputs=Schema([ColSpec("string", column)]))
    spec = reads["table_input"]
    # numbers as any type: MLflow refuses JSON's 127 for a double column ("Can not safely convert
    # int64 to float64"); encode_rows reads them and names a value that is not a number
    return ModelSignature(inputs=Schema([*(ColSpec(AnyType(), c) for c in spec["numeric"]),
                                         *(ColSpec("string", c) for c in spec["categories"])]))


def save_raw_input_model(uri: str, reads: dict[str, Any], out_dir: Path) -> Path:
    """The wrapper of ``uri`` saved as an MLflow model in ``out_dir`` (replaced if there)."""
    import shutil

    from archbench.tracking.mlflow_run import pip_requirements

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    import logging

    code = Path(__file__).with_name("raw_input_model.py")  # MLflow's "models from code"
    validating = logging.getLogger("mlflow.pyfunc")  # its "Validating input example" line: noise here
    level = validating.level
    validating.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            torch_model = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch)
            (Path(scratch) / "reads.json").write_text(json.dumps(reads))
            mlflow.pyfunc.save_model(str(out_dir), python_model=str(code), signature=_signature(reads),
                                     artifacts={"torch_model": torch_model, "reads": str(Path(scratch) / "reads.json")},
                                     input_example=example_input(reads), pip_requirements=pip_requirements())
    finally:
        validating.setLevel(level)
    return out_dir
