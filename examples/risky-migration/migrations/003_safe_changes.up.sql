-- The same intent, done without long locks.
SET lock_timeout = '2s';
ALTER TABLE accounts ADD COLUMN region text;
CREATE INDEX CONCURRENTLY accounts_region_idx ON accounts (region);
