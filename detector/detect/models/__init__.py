"""ONNX classifiers at run time: load (manifests checked against the feature catalogues), score, explain.

Training (scikit-learn, skl2onnx) lives in ``detector.lab.train``; nothing here imports it.
"""
