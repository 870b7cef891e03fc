-- Coffer metadata schema, version 14 (SQLite): each region has its own object store, so a volume, and every object queued for deletion, records the region whose store holds its objects. Keep in step with ../postgres/0014_regions.sql.
-- region: a region name of the deployment's configuration. The empty string marks rows from before this version, whose objects are all in the store of the deployment's first region: the service writes that region's name into them at start.
ALTER TABLE volumes ADD COLUMN region TEXT NOT NULL DEFAULT '';
ALTER TABLE gc_queue ADD COLUMN region TEXT NOT NULL DEFAULT '';
ALTER TABLE gc_objects ADD COLUMN region TEXT NOT NULL DEFAULT '';
-- target_region: where a copy job's target lives (its source's region for a copy within one region).
ALTER TABLE jobs ADD COLUMN target_region TEXT NOT NULL DEFAULT '';
-- Incremental copies: a copy job records the view it copies (source_volume at source_generation), so a later copy of the same lineage knows its base, and a job built on a base records it (base_id: the earlier copy its target is a child of, base_generation: the generation of the source that copy was made from). bytes_copied: the data the job read and wrote (for an incremental copy, only the chunks changed since its base).
ALTER TABLE jobs ADD COLUMN source_volume TEXT;
ALTER TABLE jobs ADD COLUMN source_generation BIGINT;
ALTER TABLE jobs ADD COLUMN base_id TEXT;
ALTER TABLE jobs ADD COLUMN base_generation BIGINT;
ALTER TABLE jobs ADD COLUMN bytes_copied BIGINT NOT NULL DEFAULT 0;
