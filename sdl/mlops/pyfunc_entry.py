"""The pyfunc's entry point as code (MLflow "models from code").

MLflow stores a ``PythonModel`` instance by pickling it (cloudpickle), and loading a model
unpickles that. Logged from this file instead, the registered model holds no pickle: loading
runs this file (shipped with the model, beside the bundled ``sdl`` package), which builds the
tagger; its weights are safetensors and its vocabulary Parquet.
"""

import mlflow
from sdl.mlops.pyfunc import SDLTagger

mlflow.models.set_model(SDLTagger())
