"""Everything that talks to IPython: the magics, the ``%pipeline`` commands (shared
with the ``smstep`` CLI), option parsing, headless notebook loading and the lab
extension's comm. Thin: the work is done by ``workspace`` and the layers below.
"""
