"""Text: word-vector sources (``sources``: fastText ``.bin``, ``.vec``/GloVe text, numpy,
the packaged GloVe), the embedding of tags (``embedding``), the Parquet vector cache
(``cache``) and the vocabulary a model serves and how it grows (``vocabulary``)."""
