"""Logging, metrics and the ops endpoints every RealChat process serves."""
