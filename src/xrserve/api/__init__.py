"""Thin transports: each turns its wire format into `InferenceRequest`s for the scheduler."""
