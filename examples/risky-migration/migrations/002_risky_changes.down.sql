DROP INDEX accounts_tier_idx;
ALTER TABLE accounts ALTER COLUMN balance TYPE int;
ALTER TABLE accounts DROP COLUMN tier;
