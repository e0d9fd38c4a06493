"""Evaluation: methods (static, energy baseline, SDM and its ablations) scored against real
clips with FID, SSIM, CSIM, LMD, lip-sync and head-motion metrics (docs/METRICS.md)."""

from sdmtalk.evaluate.methods import DEFAULT_METHODS, METHODS, Method, parse_methods
from sdmtalk.evaluate.runner import add_evaluate_arguments, evaluate, run_evaluate

__all__ = ["DEFAULT_METHODS", "METHODS", "Method", "add_evaluate_arguments", "evaluate", "parse_methods",
           "run_evaluate"]
