"""Everything tbhook shows: events in words (``describe``), tables sized to the terminal
(``tables``), the registry of output formats (``formats``) and hostile sender text made safe
(``safe``). No SQL and no I/O besides writing the answer."""
