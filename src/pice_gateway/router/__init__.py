"""The request router: outline (progressive) or direct (cloud), decided before any cloud call.

``model.py`` is the pure core (weights, the decision); ``encoder.py`` turns a conversation into a
sentence embedding (all-MiniLM-L6-v2 fine-tuned for the router by a LoRA, dynamic-int8 ONNX,
on onnxruntime); ``assets.py`` provisions the encoder's files and ``quantize.py`` derives the
graph it runs (the LoRA added, then int8);
``training.py`` reproduces the shipped weights (``pice router train``) and measures them
(``pice router eval``).
"""
