"""Learned quality routing: training, calibration, evaluation and the request-time predictor."""
