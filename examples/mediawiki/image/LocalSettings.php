<?php
# MediaWiki settings of the stagectl example: everything that differs between
# environments comes from the environment, so the image needs no file written
# by the installer (install.php writes its own copy to /tmp and it is thrown
# away). STAGING ONLY: exception details shown, a fixed secret key by default.
if ( !defined( 'MEDIAWIKI' ) ) {
	exit;
}

$env = static function ( string $name, string $default ): string {
	$v = getenv( $name );
	return ( $v === false || $v === '' ) ? $default : $v;
};

$wgSitename = $env( 'WIKI_NAME', 'Staging Wiki' );
$wgMetaNamespace = 'Project';
$wgServer = $env( 'WIKI_SERVER', 'http://localhost:8080' );
$wgScriptPath = '/mediawiki';
$wgResourceBasePath = $wgScriptPath;

$wgDBtype = 'mysql';
$wgDBserver = $env( 'WIKI_DB_HOST', 'db' );
$wgDBname = $env( 'WIKI_DB_NAME', 'wiki' );
$wgDBuser = $env( 'WIKI_DB_USER', 'wiki' );
$wgDBpassword = $env( 'WIKI_DB_PASSWORD', '' );
$wgDBprefix = '';
$wgDBTableOptions = 'ENGINE=InnoDB, DEFAULT CHARSET=binary';

$wgMainCacheType = CACHE_ACCEL;
$wgSessionCacheType = CACHE_DB;
$wgSecretKey = $env( 'WIKI_SECRET_KEY', str_repeat( '5a', 32 ) );
$wgUpgradeKey = 'stagectl';
$wgLanguageCode = 'en';
$wgEnableUploads = false;
$wgEnableEmail = false;
$wgUseInstantCommons = false;
$wgDiff3 = '';

wfLoadSkin( 'Vector' );
$wgDefaultSkin = 'vector';

$wgShowExceptionDetails = true;

# Settings an image built FROM this one adds (an extension, a schema hook):
# every settings.d/*.php, in name order. update.php (wiki-setup) applies the
# schema changes they declare.
foreach ( glob( '/usr/local/share/stagectl-mediawiki/settings.d/*.php' ) ?: [] as $file ) {
	require $file;
}
