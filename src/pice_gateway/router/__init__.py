"""The request router: outline (progressive) or direct (cloud), decided before any cloud call.

``model.py`` is the pure core (weights, the decision); ``encoder.py`` turns a conversation into a
sentence embedding (all-MiniLM-L6-v2, dynamic-int8 ONNX, on onnxruntime); ``assets.py``
provisions the encoder's files and ``quantize.py`` derives the int8 graph it runs;
``training.py`` reproduces the shipped weights (``pice router train``) and measures them
(``pice router eval``).
"""
