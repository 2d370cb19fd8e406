"""The machinery the tutorial's scripts share, one job a module:

  runtime          TensorFlow imported quietly, one-line errors, the session's
                   options, the script runner
  checkpoints      finding, checking, restoring and saving checkpoints
  summaries        event files, and the evaluator's per-class summaries
  training         the training loop of every trainer
  mixed_precision  16-bit arithmetic and fp16's loss scaling
  cluster          parameter servers and workers that watch each other
  download         the data set, downloaded and extracted safely

Importing the package imports nothing else; runtime imports TensorFlow.
"""
