"""Voice helpers shared by the audio routes and the NPC pipeline: decoding, sentences, visemes, emotion.

Nothing here calls a model directly: the pieces that need one (emotion) take the scheduler.
"""
