"""Evaluation: scoring a model on images (``inference``), the metrics under each protocol
(``metrics`` over the blocked kernels of ``ranking``: mAP, P/R/F1@K, chance), the test set a
dataset is scored on (``test_set``), a model's whole evaluation (``model_evaluation``), its
tables, reports and plots (``tables``, ``reports``, ``plots``) and the published numbers they
are compared with (``references``)."""
