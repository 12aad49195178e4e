"""``cage bench``: every way to run a CAGE network (``cage.runtimes``) and the whole ``cage predict`` path
(``cage.inference``), measured side by side. It sits above both, so that neither imports the other's way up.
"""
