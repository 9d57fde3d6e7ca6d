"""The console's pages, one module per page family: ``events`` (the live list, one event,
send), ``stream`` (new events over SSE), ``cases`` (persons, cases), ``report``,
``quarantine``, ``health``, ``session`` (sign-in). Each view is a function of the ``Site``,
the request and the posted form, run off the event loop by ``Site.route``."""
