"""Distillation-attack detector: gateway request metadata in, alerts about accounts and hydra clusters out."""

__version__ = "0.1.0"
