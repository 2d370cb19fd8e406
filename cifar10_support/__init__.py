"""The machinery the tutorial's scripts share, one job a module: runtime
(TensorFlow imported quietly, one-line errors, the session's options, the
script runner), checkpoints (found, checked, restored and saved), summaries,
training (the loop of every trainer), mixed_precision, cluster (parameter
servers and workers that watch each other) and download (the data set).
Importing the package imports nothing else; runtime imports TensorFlow.
"""
