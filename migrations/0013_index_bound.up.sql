-- Every statement index-bound (the plan test, tests/it/plans.rs). A family's recordings
-- had an index only for the live ones (idx_recordings_family, deleted_at IS NULL), so
-- what reads a family's trash too (the books, reconcile_storage, purge_family's "is
-- anything left", a restore taking its recordings back, a family purge's claims)
-- scanned the whole table. This one holds every recording not yet purged (tombstones
-- stay out: they are kept for good and never read by family), by family and trash time.
CREATE INDEX idx_recordings_family_unpurged ON public.recordings (family_id, deleted_at)
  WHERE purged_at IS NULL;
