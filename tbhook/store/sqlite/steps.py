"""The SQLite schema steps by name, in order, and the ones a reader can do without: what a
read command checks before it reads, without importing sqlite-utils (about 30 ms of every
command). ``migrations`` defines the steps; a test keeps these names equal to its."""

STEP_NAMES = (
    "m001_events_and_quarantine",
    "m002_views",
    "m003_merge_indexes",
    "m004_quarantine_line",
    "m005_forwards",
    "m006_timestamp_index",
    "m007_unknown_labels",
    "m008_meta",
    "m009_merged_logs",
    "m010_views_in_range",
    "m011_redelivery_indexes",
    "m012_event_counts",
    "m013_event_time_index",
    "m014_dedupe_in_time_order",
    "m015_case_timelines",
    "m016_queue_and_tallies",
)

# Steps the read commands do not need: a reader can use a database still waiting for them (the
# next `tbhook serve` applies them). Every other step changes what readers query.
READERS_DO_NOT_NEED = {
    "m006_timestamp_index",  # only faster
    "m007_unknown_labels",  # a view for analysts
    "m008_meta",  # read by doctor and merge, which cope without it
    "m009_merged_logs",  # written by merge, which opens for writing (and so migrates)
    "m010_views_in_range",  # views for analysts
    "m011_redelivery_indexes",  # only faster
    "m012_event_counts",  # only faster: stats scans the events without it
    "m013_event_time_index",  # only faster
    "m014_dedupe_in_time_order",  # the same rows and dedupe; only the writers' key changes
    "m015_case_timelines",  # only faster: report counts from the events without it
    "m016_queue_and_tallies",  # only faster: queue and report count from the events without it
}
