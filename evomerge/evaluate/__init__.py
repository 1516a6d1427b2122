"""Fitness evaluation: tasks (fitness/*.yaml), backends (hf, torch, vllm), evaluators."""
