"""The pure domain: no I/O, no SQL, no HTTP. What both backends and both faces (the command
line and the console) share, so they cannot disagree.

``events`` (parse and validate a body), ``persons`` (merge resolution), ``cases`` (case
timelines, waits, the kept summary), ``report`` (report's counting), ``hours`` (business
hours), ``health`` (doctor's rules), ``filters`` (which events a question is about),
``times`` (moments and durations, read and written), ``words`` (events and sizes in words),
``text`` (sender text made safe), ``targets`` (what --db names).
"""
