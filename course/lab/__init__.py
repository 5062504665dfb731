"""Instruments that single lessons use: the loader explorer (06), the bulk race (07), the pool
playground (09), error kinds (10), query plans (11) and the charts they draw.

Each module is imported by the lesson that needs it (``from course.lab import pooling``), so
``import course`` stays quick. The lab uses the platform (``course.*``); the platform never
imports the lab.
"""
