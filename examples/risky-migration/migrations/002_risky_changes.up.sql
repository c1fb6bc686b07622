-- Each statement below takes a lock that stops the app on a big table.
ALTER TABLE accounts ADD COLUMN tier text NOT NULL;
ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;
CREATE INDEX accounts_tier_idx ON accounts (tier);
