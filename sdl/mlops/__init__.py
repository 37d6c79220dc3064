"""MLOps, the only code that imports mlflow: tracking runs (``tracking``, ``run_context``),
the train and evaluate stages' runs (``training_run``, ``evaluation_run``), LoggedModels
(``logged_models``), the pyfunc tagger and its served boundary (``pyfunc``, ``pyfunc_entry``,
``serving_inputs``, ``model_logging``), the registry and its gate (``registry``, ``gate``,
``registration``) and the growth of data and vocabulary that makes retraining due (``growth``)."""
