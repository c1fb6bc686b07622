<?php
// Exit 0 when the wiki's database already holds MediaWiki's tables, 1 when it
// does not, 2 when the database cannot be reached.
mysqli_report( MYSQLI_REPORT_OFF );
$db = @new mysqli( getenv( 'WIKI_DB_HOST' ) ?: 'db', getenv( 'WIKI_DB_USER' ) ?: 'wiki',
	getenv( 'WIKI_DB_PASSWORD' ) ?: '', getenv( 'WIKI_DB_NAME' ) ?: 'wiki' );
if ( $db->connect_errno ) {
	fwrite( STDERR, "has-tables: cannot connect: {$db->connect_error}\n" );
	exit( 2 );
}
$r = $db->query( "SHOW TABLES LIKE 'page'" );
exit( $r && $r->num_rows > 0 ? 0 : 1 );
