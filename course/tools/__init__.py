"""The command-line tools behind ``python -m course ...``: build, grade, doctor, reset, admin.

Tools use the platform and the exercises; nothing under ``course`` imports a tool.
"""
