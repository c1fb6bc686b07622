<?php
# Loaded by the example's LocalSettings.php (settings.d/*.php). A schema change
# the way an extension declares one: update.php creates the staging_note table
# when the wiki's database does not have it yet.
$wgHooks['LoadExtensionSchemaUpdates'][] = static function ( $updater ) {
	$updater->addExtensionTable( 'staging_note', __DIR__ . '/staging_note.sql' );
};
