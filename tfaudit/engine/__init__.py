"""The engine room: loads models, synthesises inputs, runs checks in isolated workers, measures.

Everything that imports TensorFlow lives here or in the checks, and runs in worker processes.
"""
