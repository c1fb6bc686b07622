DROP INDEX CONCURRENTLY accounts_region_idx;
ALTER TABLE accounts DROP COLUMN region;
