-- A note a wiki user leaves for the staging team (created by update.php through
-- 50-staging-note.php). /*_*/ is the table prefix, /*$wgDBTableOptions*/ the
-- wiki's table options: MediaWiki substitutes both.
CREATE TABLE /*_*/staging_note (
  sn_id INT UNSIGNED NOT NULL PRIMARY KEY AUTO_INCREMENT,
  sn_user INT UNSIGNED NOT NULL,
  sn_text VARBINARY(255) NOT NULL
) /*$wgDBTableOptions*/;
