-- Coffer metadata schema, version 14 (PostgreSQL): each region has its own object store, so a volume, and every object queued for deletion, records the region whose store holds its objects. Keep in step with ../sqlite/0014_regions.sql.
-- region: a region name of the deployment's configuration. The empty string marks rows from before this version, whose objects are all in the store of the deployment's first region: the service writes that region's name into them at start.
ALTER TABLE volumes ADD COLUMN region TEXT NOT NULL DEFAULT '';
ALTER TABLE gc_queue ADD COLUMN region TEXT NOT NULL DEFAULT '';
ALTER TABLE gc_objects ADD COLUMN region TEXT NOT NULL DEFAULT '';
-- target_region: where a copy job's target lives (its source's region for a copy within one region).
ALTER TABLE jobs ADD COLUMN target_region TEXT NOT NULL DEFAULT '';
